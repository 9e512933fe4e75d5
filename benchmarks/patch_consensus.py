"""PatchPerPix assembly (``patch_consensus``): time and peak memory at 512² and 1024².

Two kinds of input, each case in a fresh process so that its peak memory is its own:

- ``truth``: DSB2018 test masks (256²) tiled 2x2 (512²) and 4x4 (1024²); every pixel of an
  object gets its exact 25x25 patch, softened to 0.95 / 0.05 and given Gaussian noise of
  ``--noise``. This times the assembly alone and checks it against the known answer.
- ``model``: a shipped PatchPerPix model on real images of its own test split: DSB images
  tiled the same way for ``patchperpix-nuclei``; for ``patchperpix-cells`` a 512² crop and a
  whole 1024² Usiigaci image (1022x1024). The process predicts, decodes and assembles.

Columns: foreground pixels with a patch (F), the full assembly (voting + the rest), the
re-assembly after a change of a cheap knob (median over fc_threshold 0.5 / 0.7 / 0.8, mws
off / on, merge_size 30 and min_size 30 / 15, the voting coming from the cache), the peak
resident memory the assembly adds over what the process held after decoding (Linux VmHWM,
reset through /proc/self/clear_refs just before the assembly), the whole process's peak
(``model``: the network, the prediction, the decoded patches and the assembly), and AP@0.5
against the ground truth. Targets on 2 CPU cores: re-assembly <= 1 s at 512², peak memory
<= 2 GB at 1024².

    python benchmarks/patch_consensus.py [--cases truth,model] [--sizes 512,1024] [--noise 0.1]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import time

TARGET_REASSEMBLY_S = 1.0
TARGET_PEAK_GB = 2.0
CHEAP = (
    {"fc_threshold": 0.5},
    {"fc_threshold": 0.7},
    {"fc_threshold": 0.8},
    {"mws": False},
    {"mws": True},
    {"merge_size": 30},
    {"min_size": 30},
    {"min_size": 15},
)


def _status_mb(key: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (peak resident since the last reset), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _reset_peak() -> None:
    """Start a new peak: Linux resets VmHWM to the current RSS on '5' in clear_refs."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _cells_image(size: int):
    import csv
    from pathlib import Path

    import numpy as np
    import tifffile

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "usiigaci_phase"
    with open(root / "metadata.csv", newline="") as f:
        name = sorted(r["name"] for r in csv.DictReader(f) if r["split"] == "test")[0]
    image = tifffile.imread(root / "images" / f"{name}.tif").astype(np.float32)
    mask = tifffile.imread(root / "masks" / f"{name}.tif").astype(np.int64)
    if size < max(image.shape):
        image, mask = image[:size, :size], mask[:size, :size]
    return image, mask


def child(case: str, size: int, noise: float) -> dict:
    """One measurement (runs in its own process)."""
    import numpy as np
    from _common import tiled_images, tiled_truth

    from napari_instseg.core.assembly.patches import (
        PatchConsensusConfig,
        patches_from_labels,
        segment_patch_consensus,
    )
    from napari_instseg.core.metrics import average_precision_dsb

    # compile (or load from numba's cache) on a tiny input first
    tiny = np.zeros((16, 16), np.int64)
    tiny[4:10, 4:10] = 1
    segment_patch_consensus(
        {
            "foreground": (tiny > 0).astype(np.float32),
            "patches": patches_from_labels(tiny, (5, 5)),
            "patch_pixels": np.flatnonzero(tiny),
            "patch_shape": np.array([5, 5]),
        }
    )
    out: dict = {"case": case, "size": size}
    if case == "truth":
        truth, _ = tiled_truth(size // 256)
        rng = np.random.default_rng(0)
        pixels = np.flatnonzero(truth.ravel() > 0)
        patches = np.empty((pixels.size, 625), np.uint8)
        for start in range(0, pixels.size, 16384):  # in chunks: a lean process peak
            sel = pixels[start : start + 16384]
            exact = patches_from_labels(truth, (25, 25), sel) == 255
            value = np.where(exact, 0.95, 0.05) + rng.normal(0, noise, exact.shape)
            patches[start : start + sel.size] = np.round(np.clip(value, 0, 1) * 255)
        arrays = {
            "foreground": (truth > 0).astype(np.float32),
            "patches": patches,
            "patch_pixels": pixels,
            "patch_shape": np.array([25, 25]),
        }
        knobs = {}
    else:
        from napari_instseg.core.jobs import run
        from napari_instseg.core.pipeline import load_model, predict_image

        name, rest = case.split(":")
        model = load_model(name)
        if rest == "dsb":
            image, (truth, _) = tiled_images(size // 256), tiled_truth(size // 256)
        else:
            image, truth = _cells_image(size)
        t0 = time.perf_counter()
        prediction = run(predict_image(model, image))
        t1 = time.perf_counter()
        arrays = model.method.decode(prediction.raw, model.config)
        out["predict_s"] = t1 - t0
        out["decode_s"] = time.perf_counter() - t1
        del prediction
        knobs = dict(model.card.backend_config)
        out["case"] = name
        out["shape"] = list(truth.shape)
    before = _status_mb("VmHWM")
    _reset_peak()
    base = _status_mb("VmRSS")
    t = {}
    config = PatchConsensusConfig(**knobs)
    labels = segment_patch_consensus(arrays, config, timings=t)
    out["full_s"] = t["total"]
    out["voting_s"] = t["voting"]
    again = []
    for change in CHEAP:
        tt = {}
        segment_patch_consensus(arrays, dataclasses.replace(config, **change), timings=tt)
        assert tt["cached_voting"]
        again.append(tt["total"])
    out["reassembly_s"] = statistics.median(again)
    out["reassembly_max_s"] = max(again)
    out["assembly_mb"] = _status_mb("VmHWM") - base
    out["process_peak_mb"] = max(before, _status_mb("VmHWM"))
    out["F"] = int(len(arrays["patch_pixels"]))
    out["ap50"] = average_precision_dsb(truth, labels, iou_threshold=0.5)
    out["objects"] = [int(np.unique(truth[truth > 0]).size), int(labels.max())]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", default="truth,model")
    p.add_argument("--sizes", default="512,1024")
    p.add_argument("--noise", type=float, default=0.1)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args.noise)))
        return
    cases = []
    for kind in args.cases.split(","):
        if kind == "truth":
            cases.append("truth")
        elif kind == "model":
            cases += ["patchperpix-nuclei:dsb", "patchperpix-cells:usiigaci"]
        else:
            cases.append(kind)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, noise {args.noise}"
    )
    header = (
        "| input | size | F | predict s | full assembly s (voting) | re-assembly s median (max) "
        "| assembly MB | process peak MB | AP@0.5 | objects true/found |"
    )
    print(header)
    print("|---" * (header.count("|") - 1) + "|")
    for case in cases:
        for size in map(int, args.sizes.split(",")):
            res = subprocess.run(
                [sys.executable, __file__, "--child", case, str(size), "--noise", str(args.noise)],
                capture_output=True,
                text=True,
            )
            if res.returncode:
                print(f"| {case} | {size} | failed: {res.stderr.strip().splitlines()[-1]} |")
                continue
            r = json.loads(res.stdout.strip().splitlines()[-1])
            shape = "x".join(map(str, r.get("shape", [size, size])))
            predict = f"{r['predict_s']:.2f}" if "predict_s" in r else "-"
            print(
                f"| {r['case']} | {shape} | {r['F']} | {predict} "
                f"| {r['full_s']:.2f} ({r['voting_s']:.2f}) "
                f"| {r['reassembly_s']:.2f} ({r['reassembly_max_s']:.2f}) "
                f"| {r['assembly_mb']:.0f} | {r['process_peak_mb']:.0f} | {r['ap50']:.3f} "
                f"| {r['objects'][0]}/{r['objects'][1]} |",
                flush=True,
            )
    print(
        f"targets: re-assembly <= {TARGET_REASSEMBLY_S:.0f} s at 512²; "
        f"peak memory <= {TARGET_PEAK_GB:.0f} GB at 1024²"
    )


if __name__ == "__main__":
    main()
