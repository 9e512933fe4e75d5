"""Time the mutex watershed and its back-end on 512² and 2048² affinities from real masks.

Input: ground-truth nuclei masks of the DSB2018 fluorescence test split (256² images, listed
in ``metadata.csv``), tiled 2x2 into a 512² scene and 8x8 into a 2048² one (the masks are
reused in turn; every tile keeps its own ids). Affinities for the 8 offsets (-1,0), (0,-1),
(-3,0), (0,-3), (-9,0), (0,-9), (-27,0), (0,-27) are the perfect ones (1 when a pixel and its
partner lie in the same nucleus, else 0), blurred with a Gaussian of ``--sigma`` pixels and
given Gaussian noise of ``--noise``, so that the partition is not trivial; the foreground
probability is the blurred, noisy mask. The first two channels are attractive, the other six
repulsive.

Rows: ``mutex_watershed`` on the whole image (no mask: every pixel is a node) at strides 1, 5
and 10, with the time split into edge building, sorting, kernel (union-find with mutexes) and
labelling; then the full ``segment_mutex_watershed`` back-end (foreground cut at 0.5, merge of
fragments up to 50 px, objects under 25 px removed). Times are the median (min, max) of
``--repeats`` runs (``--large-repeats`` above 1024²) after a warm-up run; the numba compile
time is measured once in a separate process with an empty cache. ARI is the adjusted Rand
index against the ground truth, over the true foreground pixels for the raw partition and over
all pixels for the back-end. Target: median <= 300 ms at 512², stride 5, on 2 CPU cores.

    python benchmarks/mutex.py [--repeats 7] [--large-repeats 2] [--sizes 512,2048]
        [--strides 1,5,10] [--sigma 1.0] [--noise 0.15]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
from _common import TILE, compile_ms, stats, tiled_truth
from scipy import ndimage as ndi
from sklearn.metrics import adjusted_rand_score

OFFSETS = np.array([(-1, 0), (0, -1), (-3, 0), (0, -3), (-9, 0), (0, -9), (-27, 0), (0, -27)])
TARGET_MS = 300.0

COMPILE_SNIPPET = """
import time
import numpy as np
t0 = time.perf_counter()
from napari_instseg.core.assembly.mutex import mutex_watershed
t1 = time.perf_counter()
w = np.random.default_rng(0).random((4, 16, 16)).astype(np.float32)
mutex_watershed(w, [(-1, 0), (0, -1), (-3, 0), (0, -3)], strides=2)
t2 = time.perf_counter()
print(f"{1000 * (t1 - t0):.0f} {1000 * (t2 - t1):.0f}")
"""


def noisy_affinities(truth: np.ndarray, sigma: float, noise: float, seed: int):
    """Blurred, noisy perfect affinities (C, Y, X) and foreground probability (Y, X)."""
    rng = np.random.default_rng(seed)
    aff = np.zeros((len(OFFSETS), *truth.shape), np.float32)
    for c, (dy, dx) in enumerate(OFFSETS):
        partner = np.zeros_like(truth)  # outside the image: background
        ys, xs = (
            slice(max(0, -dy), truth.shape[0] - max(0, dy)),
            slice(max(0, -dx), truth.shape[1] - max(0, dx)),
        )
        ps, px = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
        partner[ys, xs] = truth[ps, px]
        aff[c] = (truth == partner) & (truth > 0)
    aff = ndi.gaussian_filter(aff, (0, sigma, sigma))
    aff += rng.normal(0, noise, aff.shape).astype(np.float32)
    fg = ndi.gaussian_filter((truth > 0).astype(np.float32), sigma)
    fg += rng.normal(0, noise, fg.shape).astype(np.float32)
    return np.clip(aff, 0, 1), np.clip(fg, 0, 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--large-repeats", type=int, default=2, help="repeats above 1024² (stride 1 takes ~20 s)"
    )
    p.add_argument("--sizes", default="512,2048")
    p.add_argument("--strides", default="1,5,10")
    p.add_argument("--sigma", type=float, default=1.0, help="blur of the perfect affinities")
    p.add_argument("--noise", type=float, default=0.15, help="sd of the added Gaussian noise")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    strides = [int(s) for s in args.strides.split(",")]

    from napari_instseg.core.assembly import mutex as mws

    imp_ms, compile_first_ms = compile_ms(COMPILE_SNIPPET)
    t0 = time.perf_counter()
    mws.mutex_watershed(np.ones((4, 8, 8), np.float32), OFFSETS[:4], strides=2)
    cached_ms = 1000 * (time.perf_counter() - t0)

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} (other jobs may share the CPU)"
    )
    print(
        f"numba compile (empty cache, fresh process): first call {compile_first_ms} ms "
        f"(import {imp_ms} ms); first call with the on-disk cache: {cached_ms:.0f} ms"
    )
    print(
        f"affinities: perfect, blurred sigma {args.sigma}, noise sd {args.noise}; "
        f"median (min-max) of {args.repeats} runs ({args.large_repeats} above 1024²) after one "
        "warm-up"
    )
    header = (
        f"{'size':>9} {'function':24} {'stride':>6} {'edges':>9} {'build':>7} {'sort':>7} "
        f"{'kernel':>7} {'label':>7} {'median ms':>9} {'min-max ms':>13} {'objects':>7} "
        f"{'truth':>6} {'ARI':>6} {'/300ms':>7}"
    )
    print(header)
    print("-" * len(header))
    summary = []
    for size in sizes:
        truth, n_masks = tiled_truth(size // TILE)
        aff, fg = noisy_affinities(truth, args.sigma, args.noise, args.seed)
        n_truth = len(np.unique(truth)) - 1
        name = f"{size}x{size}"
        inside = truth > 0
        repeats = args.repeats if size <= 1024 else args.large_repeats

        for stride in strides:
            parts = {"build": [], "sort": [], "kernel": [], "label": []}
            totals = []
            labels = None
            for rep in range(repeats + 1):
                t = [time.perf_counter()]
                u, v, prio, rep_ = mws._build_edges(aff, OFFSETS, n_attractive=2, strides=stride)
                t.append(time.perf_counter())
                edges = mws._sort_edges(u, v, prio, rep_)
                t.append(time.perf_counter())
                parent = mws._solve(*edges, truth.size)
                t.append(time.perf_counter())
                mws._label_roots(parent, np.ones(truth.size, bool))
                t.append(time.perf_counter())
                n_edges = u.size
                del u, v, prio, rep_, edges, parent
                t_full = time.perf_counter()
                labels = mws.mutex_watershed(aff, OFFSETS, strides=stride)
                full = time.perf_counter() - t_full
                if rep == 0:
                    continue  # warm-up
                for key, a, b in zip(parts, t[:-1], t[1:], strict=True):
                    parts[key].append(b - a)
                totals.append(full)
            med, lo, hi = stats(totals)
            split = [statistics.median(parts[k]) * 1000 for k in parts]
            ari = adjusted_rand_score(truth[inside], labels[inside])
            print(
                f"{name:>9} {'mutex_watershed':24} {stride:6d} {n_edges:9d} "
                f"{split[0]:7.1f} {split[1]:7.1f} {split[2]:7.1f} {split[3]:7.1f} "
                f"{med:9.1f} {f'{lo:.0f}-{hi:.0f}':>13} {int(labels.max()):7d} {n_truth:6d} "
                f"{ari:6.3f} {med / TARGET_MS:7.2f}"
            )
            summary.append((name, "mutex_watershed", stride, med))

        arrays = {"affinities": aff, "affinity_offsets": OFFSETS, "foreground": fg}
        for stride in strides:
            times = []
            for rep in range(repeats + 1):
                t0 = time.perf_counter()
                config = mws.MutexWatershedConfig(stride=stride)
                labels = mws.segment_mutex_watershed(arrays, config)
                if rep:
                    times.append(time.perf_counter() - t0)
            med, lo, hi = stats(times)
            ari = adjusted_rand_score(truth.ravel(), labels.ravel())
            print(
                f"{name:>9} {'segment_mutex_watershed':24} {stride:6d} {'':>9} {'':>7} {'':>7} "
                f"{'':>7} {'':>7} {med:9.1f} {f'{lo:.0f}-{hi:.0f}':>13} "
                f"{int(labels.max()):7d} {n_truth:6d} {ari:6.3f} {med / TARGET_MS:7.2f}"
            )
            summary.append((name, "segment_mutex_watershed", stride, med))
        print(f"{'':>9} ({name}: {n_masks} distinct 256² test masks tiled)")

    print()
    for name, fn, stride, med in summary:
        if name == "512x512" and stride == 5:
            verdict = "meets" if med <= TARGET_MS else "MISSES"
            print(
                f"{name} {fn}, stride 5: {med:.0f} ms = {med / TARGET_MS:.2f} x the 300 ms "
                f"target; {verdict} it"
            )


if __name__ == "__main__":
    main()
