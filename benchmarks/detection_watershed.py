"""Time the ``detection_watershed`` back-end (All-Cell Segmenter) on network-like arrays made
from real masks.

Input: ground-truth nuclei masks of the DSB2018 fluorescence test split (256² images, listed
in ``metadata.csv``), tiled 2x2 into a 512² scene and 8x8 into a 2048² one (the masks are
reused in turn; every tile keeps its own ids), and, as a last row, the first Usiigaci
phase-contrast test mask (1022x1024). From each truth the arrays a trained All-Cell model
would predict are made:

- ``height``: the training target (``height_from_labels``) plus Gaussian noise of sd
  ``--noise`` (in height units), blurred with a Gaussian of ``--sigma`` pixels and scaled back
  to that sd;
- ``foreground``: the sigmoid of the signed distance (pixels) to the foreground's edge
  (+1 on the inner, -1 on the outer edge pixel) plus noise of sd ``--fg-noise`` pixels,
  blurred the same way, so that the 0.5 cut gives the truth up to a few edge pixels;
- ``boxes`` / ``box_scores``: per object 3 copies of its true box (``[y0, x0, y1, x1]``,
  pixel edges), each corner jittered by ``--jitter`` (default 5%) of the box size, scores
  uniform in 0.5-0.95 (a stride-8 detector answers from several neighbouring cells), plus
  as many false boxes (sizes of true boxes, anywhere in the image) with scores in 0.01-0.3;
  all shuffled, float32.

No flows arrays: the back-end is run with ``route="detection"`` and the row's modality
(fluorescence for DSB, phase contrast for Usiigaci: adaptive minimum size); the column
``auto`` times the default route with that modality, which takes the detection route too
(no flows fallback for fluorescence, no flows arrays for phase) and is checked to give the
same labels.

Columns: the back-end's steps, timed by running them one by one in the back-end's order (the
result is checked to equal the back-end's): ``route`` (route choice and the foreground cut),
``select`` (confidence cut, greedy NMS, IoA filter), ``watershed`` (disc markers at the box
centres, watershed over the core, extra markers from high cores no box reached, their
watershed, the final watershed over the foreground), ``clean`` (small objects, small holes),
``refine`` (cells whose shape disagrees with the predicted height dropped), ``finish``
(small objects, relabelling); then the whole back-end call. Times are the median (min, max)
of ``--repeats`` runs (``--large-repeats`` above 1024²) after a warm-up run; the import and
first-call time is measured once in a fresh process (no numba on the detection route). AP@0.5
is the DSB average precision against the truth; ``boxes`` counts the candidates, ``kept``
the boxes left after selection. Target (live tuning: labels update as a slider moves):
median <= 300 ms at 512² on 2 CPU cores.

    python benchmarks/detection_watershed.py [--repeats 7] [--large-repeats 3]
        [--sizes 512,2048] [--noise 0.1] [--fg-noise 0.5] [--sigma 1.0] [--jitter 0.05]
        [--no-phase]
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
from scipy.special import expit

from napari_instseg.core.arrays import LABEL_DTYPE

TARGET_MS = 300.0
STEPS = ("route", "select", "watershed", "clean", "refine", "finish")
PHASE_DATA = DATA.parent / "usiigaci_phase"

COMPILE_SNIPPET = """
import time
import numpy as np
t0 = time.perf_counter()
from napari_instseg.core.assembly.detection import (
    DetectionWatershedConfig, segment_detection_watershed,
)
t1 = time.perf_counter()
lab = np.zeros((32, 32), np.uint32); lab[4:14, 4:14] = 1; lab[16:28, 6:20] = 2
from napari_instseg.core.assembly.detection import height_from_labels
arrays = {"foreground": (lab > 0).astype(np.float32), "height": height_from_labels(lab),
          "boxes": np.array([[4, 4, 14, 14], [16, 6, 28, 20]], np.float32),
          "box_scores": np.array([0.9, 0.8], np.float32)}
segment_detection_watershed(arrays, DetectionWatershedConfig(modality="fluorescence"))
t2 = time.perf_counter()
print(f"{1000 * (t1 - t0):.0f} {1000 * (t2 - t1):.0f}")
"""


def phase_truth() -> tuple[np.ndarray, str]:
    """The first Usiigaci test mask (in ``metadata.csv`` order) and its name."""
    with open(PHASE_DATA / "metadata.csv", newline="") as f:
        name = next(r["name"] for r in csv.DictReader(f) if r["split"] == "test")
    return tifffile.imread(PHASE_DATA / "masks" / f"{name}.tif").astype(LABEL_DTYPE), name


def network_arrays(
    truth: np.ndarray, noise: float, fg_noise: float, sigma: float, jitter: float, seed: int
) -> dict:
    """``foreground``, ``height``, ``boxes`` and ``box_scores`` as a trained model might give."""
    from napari_instseg.core.assembly.detection import height_from_labels

    rng = np.random.default_rng(seed)

    def smooth_noise(sd):
        n = rng.normal(0, sd, truth.shape)
        if sigma > 0:
            # blurring shrinks the sd by about 2 sqrt(pi) sigma in 2D; scale it back
            n = ndi.gaussian_filter(n, sigma) * (2 * np.sqrt(np.pi) * sigma)
        return n

    height = (height_from_labels(truth) + smooth_noise(noise)).astype(np.float32)
    inside = truth > 0
    signed = ndi.distance_transform_edt(inside) - ndi.distance_transform_edt(~inside)
    foreground = expit(signed + smooth_noise(fg_noise)).astype(np.float32)

    slices = [s for s in ndi.find_objects(truth) if s is not None]
    true_boxes = np.array([(s[0].start, s[1].start, s[0].stop, s[1].stop) for s in slices], float)
    size = np.stack([true_boxes[:, 2] - true_boxes[:, 0], true_boxes[:, 3] - true_boxes[:, 1]], 1)
    limits = np.array([truth.shape[0], truth.shape[1]] * 2, float)
    copies = np.repeat(true_boxes, 3, axis=0)
    copies += rng.normal(0, jitter, copies.shape) * np.tile(np.repeat(size, 3, axis=0), 2)
    copies = np.clip(copies, 0, limits)
    n_false = len(true_boxes)
    hw = size[rng.integers(0, len(size), n_false)]
    y0 = rng.uniform(0, truth.shape[0] - hw[:, 0])
    x0 = rng.uniform(0, truth.shape[1] - hw[:, 1])
    false = np.stack([y0, x0, y0 + hw[:, 0], x0 + hw[:, 1]], 1)
    boxes = np.concatenate([copies, false])
    scores = np.concatenate([rng.uniform(0.5, 0.95, len(copies)), rng.uniform(0.01, 0.3, n_false)])
    order = rng.permutation(len(boxes))
    return {
        "foreground": foreground,
        "height": height,
        "boxes": boxes[order].astype(np.float32),
        "box_scores": scores[order].astype(np.float32),
    }


def run_steps(arrays, cfg, clock):
    """The back-end's steps in its order (no mask, detection route), calling ``clock(step)``
    after each; returns the labels and the number of boxes kept."""
    from skimage.segmentation import watershed

    from napari_instseg.core.assembly import detection as dw
    from napari_instseg.core.assembly.labels import (
        fill_small_holes,
        finish_labels,
        remove_small_objects,
    )
    from napari_instseg.core.modality import PHASE

    report = dw.choose_route(arrays, cfg)
    if report["route"] != "detection":
        raise RuntimeError(f"expected the detection route, got {report}")
    probability = np.asarray(arrays["foreground"], np.float32)
    height = np.asarray(arrays["height"], np.float32)
    foreground = probability > cfg.fg_threshold
    clock("route")
    boxes = dw.select_boxes(
        arrays["boxes"],
        arrays["box_scores"],
        conf_threshold=report["conf_threshold"],
        nms_iou=report["nms_iou"],
        ioa_threshold=cfg.ioa_threshold,
    )
    clock("select")
    relief = -height
    core = foreground & (height >= cfg.t1)
    markers = dw.markers_from_boxes(boxes, foreground.shape, radius=cfg.marker_radius)
    markers[~core] = 0
    from_boxes = np.zeros(foreground.shape, LABEL_DTYPE)
    if markers.any():
        from_boxes = watershed(relief, markers, mask=core).astype(LABEL_DTYPE)
    extra, _ = ndi.label(core & (height >= cfg.t2) & (from_boxes == 0), structure=np.ones((3, 3)))
    extra = remove_small_objects(extra.astype(LABEL_DTYPE), cfg.min_marker_size)
    seeds = from_boxes
    if extra.any():
        missed = watershed(relief, extra, mask=core & (from_boxes == 0)).astype(LABEL_DTYPE)
        seeds = np.where(missed > 0, missed + from_boxes.max(), from_boxes)
    labels = watershed(relief, seeds, mask=foreground).astype(LABEL_DTYPE)
    clock("watershed")
    smallest = cfg.min_size
    if report["modality"] == PHASE:
        areas = np.bincount(labels.ravel())[1:]
        areas = areas[areas > 0]
        adaptive = min(dw._PHASE_MIN_SIZE_FRACTION * areas.mean(), dw._PHASE_MIN_SIZE_CAP)
        smallest = max(cfg.min_size, int(np.ceil(adaptive)))
    labels = remove_small_objects(labels, smallest)
    labels = fill_small_holes(labels, cfg.hole_size)
    clock("clean")
    labels = dw.refine_by_height(labels, height, cfg.refine_threshold)
    clock("refine")
    labels = finish_labels(labels, smallest)
    clock("finish")
    return labels, len(boxes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--large-repeats", type=int, default=3)
    p.add_argument("--sizes", default="512,2048")
    p.add_argument("--noise", type=float, default=0.1, help="sd of the height noise")
    p.add_argument("--fg-noise", type=float, default=0.5, help="sd (px) of the foreground noise")
    p.add_argument("--sigma", type=float, default=1.0, help="blur of the noise (pixels)")
    p.add_argument("--jitter", type=float, default=0.05, help="box jitter, fraction of size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-phase", action="store_true", help="skip the Usiigaci row")
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from napari_instseg.core.assembly import get_backend
    from napari_instseg.core.metrics import average_precision_dsb
    from napari_instseg.core.modality import FLUORESCENCE, PHASE

    backend = get_backend("detection_watershed")
    imp_ms, first_ms = compile_ms(COMPILE_SNIPPET)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"load average {os.getloadavg()[0]:.2f} (other jobs may share the CPU)"
    )
    print(f"fresh process: import {imp_ms} ms, first call {first_ms} ms")
    print(
        f"input: height target + noise sd {args.noise}, foreground sigmoid(signed distance + "
        f"noise sd {args.fg_noise} px), noise blurred {args.sigma} px; 3 boxes per object "
        f"jittered {args.jitter:.0%} (scores 0.5-0.95) + 1 false box per object (0.01-0.3); "
        f"route forced to detection, other knobs default; median (min-max) of {args.repeats} "
        f"runs ({args.large_repeats} above 1024²) after one warm-up; step columns are medians "
        "in ms; auto = default route with the row's modality"
    )
    print(f"target: median <= {TARGET_MS:.0f} ms at 512² on 2 CPU cores (labels follow a slider)")
    header = (
        f"{'image':>16} "
        + " ".join(f"{s:>9}" for s in STEPS)
        + f" {'total ms':>9} {'min-max ms':>11} {'auto ms':>8} {'boxes':>6} {'kept':>5}"
        f" {'objects':>7} {'truth':>6} {'AP@0.5':>6} {'/300ms':>7}"
    )
    print(header)
    print("-" * len(header))

    def dsb(size):
        truth, n_masks = tiled_truth(size // TILE)
        return truth, f"{min(n_masks, (size // TILE) ** 2)} of the {n_masks}"

    cases = [("DSB", FLUORESCENCE, lambda s=s: dsb(s)) for s in sizes]
    if not args.no_phase:
        cases.append(("Usi", PHASE, phase_truth))
    summary, notes = [], []
    for source, modality, load in cases:
        truth, what = load()
        name = f"{source} {truth.shape[0]}x{truth.shape[1]}"
        notes.append(
            f"{name}: {what} 256² DSB test masks tiled"
            if source == "DSB"
            else f"{name}: Usiigaci test mask {what}, phase contrast"
        )
        arrays = network_arrays(
            truth, args.noise, args.fg_noise, args.sigma, args.jitter, args.seed
        )
        cfg = replace(backend.default_config(), modality=modality, route="detection")
        auto_cfg = replace(cfg, route="auto")
        repeats = args.repeats if truth.size <= 1024 * 1024 else args.large_repeats
        parts = {s: [] for s in STEPS}
        totals, autos = [], []
        labels = kept = None
        for rep in range(repeats + 1):
            marks = [("start", time.perf_counter())]
            stepped, kept = run_steps(
                arrays, cfg, lambda step, m=marks: m.append((step, time.perf_counter()))
            )
            t0 = time.perf_counter()
            labels = backend(arrays, config=cfg)
            t1 = time.perf_counter()
            auto = backend(arrays, config=auto_cfg)
            t2 = time.perf_counter()
            if not np.array_equal(stepped, labels):
                raise RuntimeError("the timed steps no longer match the back-end")
            if not np.array_equal(auto, labels):
                raise RuntimeError("the default route differs from the detection route")
            if rep == 0:
                continue  # warm-up
            for (_, a), (step, b) in zip(marks[:-1], marks[1:], strict=True):
                parts[step].append(b - a)
            totals.append(t1 - t0)
            autos.append(t2 - t1)
        med, lo, hi = stats(totals)
        ap = average_precision_dsb(truth, labels, iou_threshold=0.5)
        split = " ".join(f"{1000 * statistics.median(parts[s]):9.1f}" for s in STEPS)
        print(
            f"{name:>16} {split} {med:9.1f} {f'{lo:.0f}-{hi:.0f}':>11} "
            f"{stats(autos)[0]:8.1f} {len(arrays['boxes']):>6} {kept:>5} "
            f"{int(labels.max()):>7} {len(np.unique(truth)) - 1:>6} {ap:6.3f} "
            f"{med / TARGET_MS:7.2f}"
        )
        summary.append((name, med))

    for note in notes:
        print(f"{'':>16} ({note})")
    print()
    for name, med in summary:
        if name == "DSB 512x512":
            verdict = "meets" if med <= TARGET_MS else "MISSES"
            print(
                f"{name}: {med:.0f} ms = {med / TARGET_MS:.2f} x the {TARGET_MS:.0f} ms "
                f"target; {verdict} it"
            )


if __name__ == "__main__":
    main()
