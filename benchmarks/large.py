"""Blockwise segmentation on dask.distributed vs whole-image segmentation, for every shipped
model, on ~4096² mosaics of real images, printed as one table from one run.

For each model, in one worker process with one thread (a LocalCluster of 1 worker):

* **whole**: ``segment_image`` on the whole mosaic, as the reference;
* **blockwise**: ``segment_large`` with the engine's defaults (halo from the model's object
  size, core from the halo), writing sharded zarr v3;
* agreement of the two (whole-image labels as the reference): AP_dsb@0.5, adjusted Rand
  index, AP@0.5 of both against the ground truth;
* border objects: the share of reference objects crossing a block-core border that the
  blockwise result splits (their pixels carry two ids with >= 10 % each) or merges with
  another (one blockwise id covers >= 50 % of two reference objects), counted on a run with
  1024-pixel cores (3 borders per axis; for cell models an extra run, their default core
  being 2048);
* compute overhead: the summed seconds of all blockwise tasks (segment + match + compose)
  over the whole-image seconds, next to the ratio of pixels read to pixels in the image;
* memory: the worker's peak RSS during a block (VmHWM reset at each task), the largest over
  the blocks, for the mosaic and for its top-left quarter (the image grows 4x).

Mosaics: nuclei models get 17 x 17 DSB test images of 256² cropped to 4096² at (128, 128),
so block borders fall inside tiles; cell models get Usiigaci test and validation images
(1022 x 1024, flipped in turn) cropped to 4096² at (500, 500).

    python benchmarks/large.py [--models NAME ...] [--size 4096] [--json results.jsonl]
    python benchmarks/large.py --table results.jsonl      # the table of saved rows
    python benchmarks/large.py --floor --models NAME      # whole image: 512 vs 608 tiles
    python benchmarks/large.py --memory --models NAME     # memory pair on 1024-px cores
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DATA, tiled_images, tiled_truth  # noqa: E402

CELLS = DATA.parent / "usiigaci_phase"
#: Block core of the run whose borders are counted for split and merged objects: the
#: default for nuclei models; cell models (default core 2048) get an extra run with it.
SPLIT_CORE = 1024


def cells_mosaic(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Usiigaci test+val images and masks tiled (flipped in turn) and cropped to ``size``²."""
    with open(CELLS / "metadata.csv", newline="") as f:
        names = sorted(r["name"] for r in csv.DictReader(f) if r["split"] in ("test", "val"))
    n = size // 1000 + 2
    rows_i, rows_m, offset = [], [], 0
    for i in range(n):
        row_i, row_m = [], []
        for j in range(n):
            name = names[(i * n + j) % len(names)]
            image = tifffile.imread(CELLS / "images" / f"{name}.tif").astype(np.float32)
            mask = tifffile.imread(CELLS / "masks" / f"{name}.tif").astype(np.uint32)
            if (i + j) % 2:
                image, mask = image[:, ::-1], mask[:, ::-1]
            lo, hi = np.percentile(image, (1, 99.8))
            row_i.append((image - lo) / max(hi - lo, 1e-6))
            row_m.append(np.where(mask > 0, mask + offset, 0))
            offset += int(mask.max())
        rows_i.append(np.concatenate(row_i, axis=1))
        rows_m.append(np.concatenate(row_m, axis=1))
    crop = (slice(500, 500 + size), slice(500, 500 + size))
    return np.concatenate(rows_i)[crop].astype(np.float32), np.concatenate(rows_m)[crop]


def nuclei_mosaic(size: int) -> tuple[np.ndarray, np.ndarray]:
    n = size // 256 + 1
    crop = (slice(128, 128 + size), slice(128, 128 + size))
    return tiled_images(n)[crop], tiled_truth(n)[0][crop]


def border_rates(ref: np.ndarray, out: np.ndarray, core: int) -> tuple[int, float, float]:
    """(reference objects crossing a core border, share split, share merged)."""
    from scipy import ndimage as ndi

    n = int(ref.max())
    boxes = ndi.find_objects(ref)
    crossing = [
        i + 1
        for i, b in enumerate(boxes)
        if b is not None and any(s.start // core != (s.stop - 1) // core for s in b)
    ]
    if not crossing:
        return 0, 0.0, 0.0
    fg = (ref > 0) & (out > 0)
    pairs, inter = np.unique(
        ref[fg].astype(np.int64) * (int(out.max()) + 1) + out[fg], return_counts=True
    )
    r, o = np.divmod(pairs, int(out.max()) + 1)
    area = np.bincount(ref.ravel(), minlength=n + 1)
    share = inter / area[r]
    split = np.zeros(n + 1, int)
    np.add.at(split, r[share >= 0.1], 1)
    big = share >= 0.5
    covered = np.bincount(o[big], minlength=int(out.max()) + 1)
    merged = np.zeros(n + 1, bool)
    merged[r[big & (covered[o] >= 2)]] = True
    crossing = np.array(crossing)
    return (
        int(crossing.size),
        float(np.mean(split[crossing] >= 2)),
        float(np.mean(merged[crossing])),
    )


def whole_image(name: str, path: str, out: str, tile: int = 512) -> float:
    """Worker task: segment the whole image at once (one thread); save labels, return s."""
    import numba
    import torch

    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import load_model, segment_image
    from napari_instseg.core.predict import PredictConfig

    torch.set_num_threads(1)
    numba.set_num_threads(1)
    model = load_model(name)
    image = tifffile.imread(path)
    run(segment_image(model, image[:512, :512]))  # warm-up: numba compiled, buffers touched
    t0 = time.perf_counter()
    labels = run(segment_image(model, image, config=PredictConfig(tile_size=tile))).labels
    seconds = time.perf_counter() - t0
    np.save(out, labels)
    return seconds


def tiling_floor(name: str, size: int, work: Path, tile: int = 608) -> dict:
    """How much two whole-image runs differ when only the tile size changes (512 vs
    ``tile``, the size fitted blocks use): the agreement no blockwise run can beat."""
    from sklearn.metrics import adjusted_rand_score

    from napari_instseg.core.large.engine import DaskClient
    from napari_instseg.core.metrics import average_precision_dsb

    image, _ = cells_mosaic(size) if "cells" in name else nuclei_mosaic(size)
    path = work / f"{name}.tif"
    tifffile.imwrite(path, image, tile=(512, 512))
    cluster = DaskClient(n_workers=1)
    try:
        for t, out in ((512, "a.npy"), (tile, "b.npy")):
            cluster.client.submit(
                whole_image, name, str(path), str(work / out), t, pure=False
            ).result()
    finally:
        cluster.close()
    a, b = np.load(work / "a.npy"), np.load(work / "b.npy")
    return {
        "model": name,
        "tile": tile,
        "ap50": average_precision_dsb(a, b, iou_threshold=0.5),
        "ari": adjusted_rand_score(a.ravel(), b.ravel()),
    }


def memory_pair(name: str, size: int, work: Path, core: int = 1024) -> dict:
    """Peak worker RSS per block for the mosaic and its top-left quarter, both on ``core``
    cores (the quarter still has interior blocks, so both read the same window shape)."""
    from napari_instseg.core.jobs import run
    from napari_instseg.core.large.engine import DaskClient, segment_large

    image, _ = cells_mosaic(size) if "cells" in name else nuclei_mosaic(size)
    peaks = {}
    cluster = DaskClient(n_workers=1)
    try:
        for side in (size // 2, size):
            path = work / f"{name}-{side}.tif"
            tifffile.imwrite(path, image[:side, :side], tile=(512, 512))
            job = segment_large(
                path,
                work / f"{name}-{side}.zarr",
                name,
                core=core,
                client=cluster.client,
                overwrite=True,
            )
            res = run(job)
            peaks[side] = max(b["peak_rss_mb"] for b in res.blocks)
            read = res.plan["read_shape"]
    finally:
        cluster.close()
    return {
        "model": name,
        "core": core,
        "read_shape": read,
        "peak_half_mb": peaks[size // 2],
        "peak_mb": peaks[size],
        "peak_ratio": peaks[size] / peaks[size // 2],
    }


def run_model(name: str, size: int, work: Path) -> dict:
    import zarr
    from sklearn.metrics import adjusted_rand_score

    from napari_instseg.core.jobs import run
    from napari_instseg.core.large.engine import DaskClient, segment_large
    from napari_instseg.core.metrics import average_precision_dsb

    cells = "cells" in name
    image, truth = cells_mosaic(size) if cells else nuclei_mosaic(size)
    path = work / f"{name}.tif"
    tifffile.imwrite(path, image, tile=(512, 512))
    half = work / f"{name}-half.tif"
    tifffile.imwrite(half, image[: size // 2, : size // 2], tile=(512, 512))

    # One worker process, one thread: whole image and blocks in the same environment, so the
    # summed task time compares with the whole-image time.
    cluster = DaskClient(n_workers=1)
    client = cluster.client
    try:
        t_whole = client.submit(
            whole_image, name, str(path), str(work / "whole.npy"), pure=False
        ).result()
        warm = work / "warm.tif"
        tifffile.imwrite(warm, image[:512, :512])
        run(segment_large(warm, work / "warm.zarr", name, core=512, client=client, overwrite=True))
        t = time.perf_counter()
        res = run(segment_large(path, work / f"{name}.zarr", name, client=client, overwrite=True))
        wall = time.perf_counter() - t
        job = segment_large(half, work / f"{name}-half.zarr", name, client=client, overwrite=True)
        res_half = run(job)
        core = res.plan["core"][0]
        if core != SPLIT_CORE:  # more borders for the split/merge counts (cell models)
            job = segment_large(
                path, work / f"{name}-1k.zarr", name, core=SPLIT_CORE, client=client, overwrite=True
            )
            run(job)
    finally:
        cluster.close()
    whole = np.load(work / "whole.npy")
    out = zarr.open_array(str(work / f"{name}.zarr"), mode="r")[...]
    split_out = out if core == SPLIT_CORE else zarr.open_array(str(work / f"{name}-1k.zarr"))[...]
    n_cross, split, merged = border_rates(whole, split_out, SPLIT_CORE)
    p = res.plan
    read_ratio = p["blocks"] * np.prod(p["read_shape"]) / np.prod(p["shape"])
    peak = max(b["peak_rss_mb"] for b in res.blocks)
    peak_half = max(b["peak_rss_mb"] for b in res_half.blocks)
    return {
        "model": name,
        "size": list(image.shape),
        "core": core,
        "halo": p["halo"][0],
        "blocks": p["blocks"],
        "objects_whole": int(whole.max()),
        "objects_block": res.n_objects,
        "crossing": n_cross,
        "ap50_vs_whole": average_precision_dsb(whole, out, iou_threshold=0.5),
        "ari_vs_whole": adjusted_rand_score(whole.ravel(), out.ravel()),
        "split": split,
        "merged": merged,
        "ap50_gt_whole": average_precision_dsb(truth, whole, iou_threshold=0.5),
        "ap50_gt_block": average_precision_dsb(truth, out, iou_threshold=0.5),
        "whole_s": t_whole,
        "block_task_s": res.seconds["tasks"],
        "stitch_s": res.seconds["match"] + res.seconds["compose"],
        "block_wall_s": wall,
        "overhead": res.seconds["tasks"] / t_whole,
        "read_ratio": float(read_ratio),
        "peak_half_mb": peak_half,
        "peak_mb": peak,
        "peak_ratio": peak / peak_half,
        "wider_than_halo": res.stats.get("wider_than_halo", 0),
        "stages": {k: round(v, 2) for k, v in res.seconds.items()},
        "block_seconds": [round(b["seconds"], 2) for b in res.blocks],
    }


COLUMNS = [
    ("model", "{}", 20),
    ("core", "{}", 5),
    ("halo", "{}", 4),
    ("objects_whole", "{}", 7),
    ("crossing", "{}", 6),
    ("ap50_vs_whole", "{:.3f}", 7),
    ("ari_vs_whole", "{:.4f}", 7),
    ("split", "{:.2%}", 7),
    ("merged", "{:.2%}", 7),
    ("ap50_gt_whole", "{:.3f}", 7),
    ("ap50_gt_block", "{:.3f}", 7),
    ("whole_s", "{:.0f}", 6),
    ("block_task_s", "{:.0f}", 6),
    ("overhead", "{:.2f}", 6),
    ("read_ratio", "{:.2f}", 6),
    ("block_wall_s", "{:.0f}", 6),
    ("peak_half_mb", "{:.0f}", 6),
    ("peak_mb", "{:.0f}", 6),
    ("peak_ratio", "{:.3f}", 6),
]
HEADER = [
    "model", "core", "halo", "objects", "cross", "AP50/w", "ARI/w", "split", "merged",
    "APgt w", "APgt b", "whole", "tasks", "ratio", "read", "wall", "MB /4", "MB", "ratio",
]  # fmt: skip


def print_table(rows: list[dict]) -> None:
    print(" ".join(f"{h:>{w}}" for h, (_, _, w) in zip(HEADER, COLUMNS, strict=True)))
    for row in rows:
        print(" ".join(f"{fmt.format(row[k]):>{w}}" for k, fmt, w in COLUMNS))


def main() -> None:
    from napari_instseg.core.zoo import list_models, zoo_dir

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--json", help="append each model's row to this JSON-lines file")
    parser.add_argument("--table", help="only print the table of rows saved with --json")
    parser.add_argument(
        "--floor", action="store_true", help="only compare whole-image runs with 512 vs 608 tiles"
    )
    parser.add_argument(
        "--memory", action="store_true", help="only the memory pair, on 1024-px cores"
    )
    args = parser.parse_args()
    if args.table:
        with open(args.table) as f:
            print_table([json.loads(line) for line in f if line.strip()])
        return
    shipped = zoo_dir().resolve()
    names = args.models or [c.name for c, p in list_models() if p.resolve().parent == shipped]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            if args.floor or args.memory:
                extra = (tiling_floor if args.floor else memory_pair)(name, args.size, Path(tmp))
                print(json.dumps(extra), flush=True)
                continue
            row = run_model(name, args.size, Path(tmp))
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(row) + "\n")
    if rows:
        print()
        print_table(rows)


if __name__ == "__main__":
    main()
