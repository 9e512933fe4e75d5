"""Time the EmbedSeg seed clustering (`seeds` back-end) on a 512² and a 2048² prediction.

The predictions are synthetic but shaped like a trained EmbedSeg network's output, built from
the ground truth of the bundled DSB nuclei sample (512²) and its 4x4 mirrored tiling (2048²;
an object cut by a join merges with its mirror image): every object pixel points at its
object's centroid (grid units, spacing 1/1023) plus gaussian noise of about half a pixel, the
bandwidth puts the Gaussian's 0.5 level at about the object radius, and seediness follows the
distance transform inside objects with a little noise on the background. The table gives
median times (7 runs at 512², 3 at 2048²), objects found against true objects, matched objects
at IoU 0.5, and the naive all-pixels reference (the one the tests compare against) on the 512²
prediction with the speed-up, all in the same run.

    python benchmarks/seeds.py [--prediction PATH.npz] [--repeats 7] [--no-naive]

``--prediction`` also times a saved intermediate (arrays ``embedding``, ``bandwidth`` and
``seediness``).
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from skimage.measure import label as label_regions

from napari_instseg.core.assembly.seeds import cluster_seeds
from napari_instseg.core.metrics import match_instances
from napari_instseg.core.samples import load_sample

SPACING = 1.0 / 1023
ROOT = Path(__file__).resolve().parents[1]


def load_naive():
    """The slow reference clustering from the test suite."""
    path = ROOT / "tests" / "core" / "assembly" / "test_seeds.py"
    spec = importlib.util.spec_from_file_location("_seeds_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.naive_cluster_seeds


def tiled_labels(labels: np.ndarray) -> np.ndarray:
    """4x4 mirrored tiling; an object cut by a join and its mirror image become one object."""
    tile = np.concatenate([labels, labels[:, ::-1]], axis=1)
    tile = np.concatenate([tile, tile[::-1]], axis=0)
    tiled = np.tile(tile, (2, 2))
    # connected regions of equal id: copies only touch their own mirror image across a join
    return label_regions(tiled, background=0, connectivity=2).astype(np.uint32)


def synthetic_prediction(labels: np.ndarray, seed: int = 0) -> dict[str, np.ndarray]:
    """EmbedSeg-like embedding, bandwidth and seediness for the objects of ``labels``."""
    rng = np.random.default_rng(seed)
    shape = labels.shape
    ndim = labels.ndim
    ids = np.arange(1, int(labels.max()) + 1)
    grid = np.indices(shape, dtype=np.float64)
    area = np.bincount(labels.ravel(), minlength=ids.size + 1).astype(np.float64)
    present = area > 0
    centroid = np.stack(
        [np.bincount(labels.ravel(), weights=g.ravel(), minlength=ids.size + 1) for g in grid]
    ) / np.maximum(area, 1)
    obj = labels > 0
    embedding = grid.copy()
    for d in range(ndim):
        embedding[d][obj] = centroid[d][labels[obj]]
    embedding += rng.normal(0.0, 0.5, embedding.shape)
    radius = np.sqrt(area / math.pi) + 1.0
    level = np.where(present, radius, np.median(radius[present]))[labels]  # background: typical
    level = level * rng.uniform(0.9, 1.1, (ndim, *shape))
    bandwidth = math.log(2.0) / (level * SPACING) ** 2
    inside = ndi.distance_transform_edt(obj)
    peak = np.zeros(ids.size + 1)
    peak[1:] = ndi.maximum(inside, labels, ids)
    seediness = np.where(obj, 0.55 + 0.45 * np.sqrt(inside / np.maximum(peak[labels], 1)), 0.0)
    seediness += np.where(obj, rng.normal(0.0, 0.02, shape), np.abs(rng.normal(0.0, 0.05, shape)))
    return {
        "embedding": (embedding * SPACING).astype(np.float32),
        "bandwidth": bandwidth.astype(np.float32),
        "seediness": np.clip(seediness, 0.0, 1.0).astype(np.float32),
    }


def median_ms(fn, repeats: int) -> tuple[float, np.ndarray]:
    times = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times), result


def row(name, shape, ms, labels, truth=None, extra=""):
    size = "x".join(str(s) for s in shape)
    if truth is None:
        true_s, matched = "-", "-"
    else:
        true_s = str(int(truth.max()))
        matched = str(match_instances(truth, labels, iou_threshold=0.5).tp)
    print(
        f"{name:22} {size:>11} {ms:10.1f} {int(labels.max()):7d} {true_s:>7} {matched:>8} {extra}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prediction", type=Path, help="npz with embedding, bandwidth, seediness")
    p.add_argument("--repeats", type=int, default=7, help="runs at 512² (2048²: 3)")
    p.add_argument("--no-naive", action="store_true", help="skip the slow reference")
    args = p.parse_args()

    _, truth512 = load_sample("nuclei2d_dsb_stardist")
    truth2048 = tiled_labels(truth512)
    pred512 = synthetic_prediction(truth512, seed=0)
    pred2048 = synthetic_prediction(truth2048, seed=1)
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, OMP_NUM_THREADS={threads}")
    print(f"numpy {np.__version__}; load average {os.getloadavg()[0]:.2f}")
    header = f"{'run':22} {'size':>11} {'median ms':>10} {'found':>7} {'true':>7} {'IoU>=.5':>8}"
    print(header)
    print("-" * len(header))

    cluster_seeds(pred512)  # warm-up
    ms512, labels512 = median_ms(lambda: cluster_seeds(pred512), args.repeats)
    row("seeds", truth512.shape, ms512, labels512, truth512)
    if not args.no_naive:
        naive = load_naive()
        ms_naive, labels_naive = median_ms(lambda: naive(pred512), 1)
        same = "identical" if np.array_equal(labels_naive, labels512) else "DIFFERENT"
        row(
            "naive reference",
            truth512.shape,
            ms_naive,
            labels_naive,
            truth512,
            f"speed-up x{ms_naive / ms512:.0f}, labels {same}",
        )
    ms2048, labels2048 = median_ms(lambda: cluster_seeds(pred2048), 3)
    row("seeds", truth2048.shape, ms2048, labels2048, truth2048)

    if args.prediction is not None:
        with np.load(args.prediction) as data:
            arrays = {k: np.asarray(data[k]) for k in ("embedding", "bandwidth", "seediness")}
        cluster_seeds(arrays)
        ms, labels = median_ms(lambda: cluster_seeds(arrays), args.repeats)
        row(args.prediction.name[:22], arrays["seediness"].shape, ms, labels)

    verdict = "meets" if ms512 <= 50.0 else "MISSES"
    print(f"512² median {ms512:.1f} ms {verdict} the 50 ms target")


if __name__ == "__main__":
    main()
