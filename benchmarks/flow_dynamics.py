"""Time the ``flow_dynamics`` back-end on 512² and 2048² flows from real masks.

Input: ground-truth nuclei masks of the DSB2018 fluorescence test split (256² images, listed
in ``metadata.csv``), tiled 2x2 into a 512² scene and 8x8 into a 2048² one (the masks are
reused in turn; every tile keeps its own ids). The back-end gets the training targets of the
``flows`` method for these masks (unit flows and eikonal distance, background -5), with
Gaussian noise of sd ``--noise`` added, blurred with a Gaussian of ``--sigma`` pixels, so that
the flows are not perfect.

Columns: the back-end's steps, timed by running them one by one in the back-end's order (the
result is checked to equal the back-end's): ``mask`` (distance threshold and the automatic
step count), ``prep`` (unit flows, scaled by their normalised divergence with ``suppress``),
``integrate`` (damped Euler steps of every foreground pixel), ``group`` (end-point clouds and
merging of small groups), ``check`` (flows recomputed from the masks, bad masks dropped),
``clean`` (holes, small objects, relabelling); then the whole back-end call. Times are the
median (min, max) of ``--repeats`` runs (``--large-repeats`` above 1024²) after a warm-up run;
the numba compile time is measured once in a separate process with an empty cache. AP@0.5 is
the DSB average precision against the tiled truth. Target: median <= 300 ms at 512² on 2 CPU
cores. A first line times the training targets (``labels_to_fields``) on each 256² test mask
(target < 30 ms). ``--no-suppress`` times the back-end with ``suppress=False``.

    python benchmarks/flow_dynamics.py [--repeats 7] [--large-repeats 3] [--sizes 512,2048]
        [--noise 0.3] [--sigma 1.0] [--no-suppress]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
from dataclasses import replace

import numpy as np
import tifffile
from _common import DATA, TILE, compile_ms, stats, tiled_truth
from scipy import ndimage as ndi

from napari_instseg.core.arrays import LABEL_DTYPE, relabel_consecutive

TARGET_MS = 300.0
STEPS = ("mask", "prep", "integrate", "group", "check", "clean")

COMPILE_SNIPPET = """
import time
import numpy as np
t0 = time.perf_counter()
from napari_instseg.core.assembly.flows import segment_flow_dynamics
t1 = time.perf_counter()
lab = np.zeros((24, 24), np.uint32); lab[4:12, 4:12] = 1; lab[12:20, 6:16] = 2
from napari_instseg.core.flow_fields import labels_to_fields
f = labels_to_fields(lab)
segment_flow_dynamics({"flow": f.flow, "distance": np.where(lab > 0, f.distance, -5.0)})
z = np.zeros((6, 12, 12), np.uint32); z[1:5, 2:10, 2:10] = 1
f = labels_to_fields(z)
segment_flow_dynamics({"flow": f.flow, "distance": np.where(z > 0, f.distance, -5.0)})
t2 = time.perf_counter()
print(f"{1000 * (t1 - t0):.0f} {1000 * (t2 - t1):.0f}")
"""


def noisy_prediction(truth: np.ndarray, noise: float, sigma: float, seed: int):
    """Target flows and distance of ``truth`` plus blurred Gaussian noise."""
    from napari_instseg.core.flow_fields import labels_to_fields

    rng = np.random.default_rng(seed)
    fields = labels_to_fields(truth)
    distance = np.where(truth > 0, fields.distance, -5.0)

    def noisy(a):
        n = rng.normal(0, noise, a.shape)
        if sigma > 0:
            # blurring shrinks the sd by about 2 sqrt(pi) sigma in 2D; scale it back
            n = ndi.gaussian_filter(n, sigma) * (2 * np.sqrt(np.pi) * sigma)
        return (a + n).astype(np.float32)

    return {"flow": np.stack([noisy(c) for c in fields.flow]), "distance": noisy(distance)}


def time_targets(repeats: int) -> tuple[float, float, int]:
    """Median and worst median time (ms) of ``labels_to_fields`` on the 256² test masks."""
    from napari_instseg.core.flow_fields import labels_to_fields

    with open(DATA / "metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"]
    medians = []
    for r in rows:
        if int(r["height"]) != TILE or int(r["width"]) != TILE:
            continue
        mask = tifffile.imread(DATA / "masks" / f"{r['name']}.tif").astype(LABEL_DTYPE)
        labels_to_fields(mask)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            labels_to_fields(mask)
            times.append(time.perf_counter() - t0)
        medians.append(1000 * statistics.median(times))
    return statistics.median(medians), max(medians), len(medians)


def run_steps(arrays, cfg, clock):
    """The back-end's steps in its order, calling ``clock(step)`` after each."""
    from napari_instseg.core.assembly import flows as fd
    from napari_instseg.core.assembly.labels import fill_small_holes, remove_small_objects

    distance, flow = arrays["distance"], arrays["flow"]
    foreground = distance > cfg.mask_threshold
    steps = cfg.niter if cfg.niter > 0 else fd.estimate_niter(distance, foreground)
    clock("mask")
    scaled = (fd.scale_by_divergence if cfg.suppress else fd.unit_flows)(flow, foreground)
    clock("prep")
    ends = fd.follow_flows(scaled, foreground, niter=steps)
    clock("integrate")
    labels = fd.group_end_points(ends, foreground)
    labels = fd.absorb_small_groups(labels, cfg.min_size)
    clock("group")
    labels = fd.remove_bad_flow_masks(labels, flow, cfg.flow_threshold)
    clock("check")
    labels = fill_small_holes(labels, cfg.min_size)
    labels = relabel_consecutive(remove_small_objects(labels, cfg.min_size))
    clock("clean")
    return labels, steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--large-repeats", type=int, default=3)
    p.add_argument("--sizes", default="512,2048")
    p.add_argument("--noise", type=float, default=0.3, help="sd of the added noise")
    p.add_argument("--sigma", type=float, default=1.0, help="blur of the noise (pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-suppress", action="store_true", help="knob suppress=False")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from napari_instseg.core.assembly import get_backend
    from napari_instseg.core.metrics import average_precision_dsb

    backend = get_backend("flow_dynamics")
    cfg = replace(backend.default_config(), suppress=not args.no_suppress)
    imp_ms, first_ms = compile_ms(COMPILE_SNIPPET)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} (other jobs may share the CPU)"
    )
    print(
        f"numba compile (empty cache, fresh process): import {imp_ms} ms, first calls {first_ms} ms"
    )
    med_t, worst_t, n_t = time_targets(args.repeats)
    print(
        f"training targets (labels_to_fields) on {n_t} test masks of 256²: median {med_t:.1f} ms, "
        f"slowest mask {worst_t:.1f} ms (target < 30 ms)"
    )
    print(
        f"input: target flows/distance of tiled DSB2018 test masks + noise sd {args.noise} "
        f"blurred {args.sigma} px; knobs {cfg}; median (min-max) of {args.repeats} runs "
        f"({args.large_repeats} above 1024²) after one warm-up; step columns are medians in ms"
    )
    header = (
        f"{'size':>9} {'fg px':>8} {'niter':>5} "
        + " ".join(f"{s:>9}" for s in STEPS)
        + f" {'total ms':>9} {'min-max ms':>13} {'objects':>7} {'truth':>6} {'AP@0.5':>6}"
        f" {'/300ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for size in sizes:
        truth, _ = tiled_truth(size // TILE)
        arrays = noisy_prediction(truth, args.noise, args.sigma, args.seed)
        repeats = args.repeats if size <= 1024 else args.large_repeats
        parts = {s: [] for s in STEPS}
        totals = []
        labels = steps = None
        for rep in range(repeats + 1):
            marks = [("start", time.perf_counter())]
            stepped, steps = run_steps(
                arrays, cfg, lambda name, m=marks: m.append((name, time.perf_counter()))
            )
            t0 = time.perf_counter()
            labels = backend(arrays, config=cfg)
            full = time.perf_counter() - t0
            if not np.array_equal(stepped, labels):
                raise RuntimeError("the timed steps no longer match the back-end")
            if rep == 0:
                continue  # warm-up
            for (_, a), (name, b) in zip(marks[:-1], marks[1:], strict=True):
                parts[name].append(b - a)
            totals.append(full)
        med, lo, hi = stats(totals)
        ap = average_precision_dsb(truth, labels, iou_threshold=0.5)
        split = " ".join(f"{1000 * statistics.median(parts[s]):9.1f}" for s in STEPS)
        print(
            f"{size:>4}x{size:<4} {int((arrays['distance'] > 0).sum()):>8} {steps:>5} {split} "
            f"{med:9.1f} {f'{lo:.0f}-{hi:.0f}':>13} {int(labels.max()):>7} "
            f"{len(np.unique(truth)) - 1:>6} {ap:6.3f} {med / TARGET_MS:7.2f}"
        )


if __name__ == "__main__":
    main()
