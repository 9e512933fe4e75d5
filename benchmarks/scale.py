"""Object size: what ``diameter="auto"`` does for the shipped nuclei models.

Three tables, each printed as it is measured:

* ``--working`` (val split): AP@0.5 with ``diameter="auto"`` on the val images resized by
  0.5, 1 and 2, for each candidate working diameter: points around the training median, and
  ranges of the training images' median diameters (inside a range images keep their scale).
  The best is the model's ``working_diameter`` (written to the card by ``--write``).
* default (test split): the test images resized by ``--factors`` (image linear, masks nearest
  neighbour), each segmented with the diameter off, ``auto`` and the true diameter (ground
  truth median of the resized masks); AP@0.5 (mean over images), the estimate's error (auto's
  diameter over the true one: share of images within 15 %, median |error|, median signed
  error), and the time auto
  takes over a plain (diameter off) segment of the same image.
* ``--calibrate`` (train splits): the constant of the quick image-only estimate
  (:data:`napari_instseg.core.scale.CALIBRATION`).

Images larger than ``--crop`` (default 256) are centre-cropped to it *before* resizing, so a
3x image stays affordable on 2 CPU cores; the crop keeps the objects' size.

    python benchmarks/scale.py --working --models embedseg-nuclei [--write]
    python benchmarks/scale.py --models embedseg-nuclei patchperpix-nuclei [--factors 0.5 1 2 3]
    python benchmarks/scale.py --data dsb2018_stained --kind stained_colour ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from napari_instseg.core.data.datasets import read_column, read_image
from napari_instseg.core.jobs import run
from napari_instseg.core.metrics import average_precision_dsb
from napari_instseg.core.pipeline import load_model, segment_image
from napari_instseg.core.scale import labels_to_grid, median_diameter, resize_image

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"
NUCLEI_MODELS = (
    "generalist-nuclei",
    "embedseg-nuclei",
    "patchperpix-nuclei",
    "affinity-nuclei",
    "threeclass-nuclei",
    "spoco-nuclei",
    "spoco-nuclei-full",
)


def load_pairs(data: str, split: str, crop: int, kind: str | None = None, every: int = 1):
    """(name, image as stored, mask) of a split, centre-cropped to ``crop``."""
    root = DATA_ROOT / data
    splits = read_column(root, "split")
    kinds = read_column(root, "kind")
    names = sorted(n for n, s in splits.items() if s == split and (not kind or kinds[n] == kind))
    out = []
    for name in names[::every]:
        image = read_image(root / "images" / f"{name}.tif")
        mask = read_image(root / "masks" / f"{name}.tif")
        window = tuple(
            slice(max(0, (n - crop) // 2), max(0, (n - crop) // 2) + crop) for n in mask.shape
        )
        out.append((name, image[window], mask[window]))
    return out


def resized(image: np.ndarray, mask: np.ndarray, factor: float):
    """The pair resized by ``factor``: image linearly (colour kept), mask by nearest."""
    if factor == 1.0:
        return image, mask
    cf = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    out = resize_image(cf.astype(np.float32), factor)
    out = out[0] if image.ndim == 2 else np.moveaxis(out, 0, -1)
    shape = tuple(int(round(n * factor)) for n in mask.shape)
    return out, labels_to_grid(mask, shape)


def ap50(truth, labels) -> float:
    return float(average_precision_dsb(truth, labels, iou_threshold=0.5))


def with_working(model, working):
    model.card = replace(model.card, working_diameter=working)
    return model


def training_quantiles(card, qs=(10, 25, 75, 90)) -> dict[int, float]:
    """Quantiles of the per-image median object diameter of a card's training masks."""
    names = set(card.training.get("train_images", []))
    sizes = []
    for data in card.training.get("data", "").split("+"):
        for path in sorted((DATA_ROOT / data / "masks").glob("*.tif")):
            if path.stem in names:
                sizes.append(median_diameter([read_image(path)]))
    sizes = [s for s in sizes if s]
    return dict(zip(qs, np.percentile(sizes, qs).round(1).tolist(), strict=True))


def working_table(args) -> None:
    print(
        "working diameter: val AP@0.5 with diameter='auto' on val images resized by "
        f"{args.val_factors}, for each candidate working diameter (a point, or a range of the "
        "training images' median diameters inside which images keep their scale)"
    )
    for name in args.models:
        model = load_model(name)
        base = model.card.object_size or 17.0
        q = training_quantiles(model.card)
        mid = round(base, 1)
        candidates = [round(base * r, 1) for r in args.ratios]
        candidates += [[q[25], q[75]], [q[10], q[90]], [q[25], mid, q[75]], [q[10], mid, q[90]]]
        if args.forms:  # only these forms: "point", "range", "wide", "centre", "wide-centre"
            forms = ["point"] * len(args.ratios) + ["range", "wide", "centre", "wide-centre"]
            candidates = [c for c, f in zip(candidates, forms, strict=True) if f in args.forms]
        data = model.card.training.get("data", "dsb2018_fluo").split("+")
        pairs = [p for d in data for p in load_pairs(d, "val", args.crop, every=args.every)]
        scaled = {f: [resized(im, m, f) for _, im, m in pairs] for f in args.val_factors}
        print(
            f"\n{name} (training median {base:.1f} px; per-image medians 10/25/75/90 %: "
            f"{q[10]}/{q[25]}/{q[75]}/{q[90]}; {len(pairs)} val images)"
        )
        print(
            f"{'working':>14} "
            + " ".join(f"{'x' + str(f):>7}" for f in args.val_factors)
            + f" {'mean':>7} {'kept':>5} {'sec':>6}"
        )
        rows = []
        for working in candidates:
            with_working(model, working)
            t0 = time.perf_counter()
            means, kept = [], []
            for f in args.val_factors:
                aps = []
                for im, m in scaled[f]:
                    seg = run(segment_image(model, im))
                    aps.append(ap50(m, seg.labels))
                    kept.append(seg.prediction.info["diameter"]["factor"] == 1.0)
                means.append(float(np.mean(aps)))
            mean = float(np.mean(means))
            rows.append((working, mean, float(np.mean(kept))))
            print(
                f"{str(working):>14} "
                + " ".join(f"{v:7.3f}" for v in means)
                + f" {mean:7.3f} {rows[-1][2]:5.0%} {time.perf_counter() - t0:6.1f}",
                flush=True,
            )
        # the rule, fixed before the runs: the best mean, except that a candidate within
        # --tie of it that leaves more images at their own scale wins (less resizing is the
        # safer bet on images from elsewhere)
        top = max(r[1] for r in rows)
        best = max((r for r in rows if r[1] >= top - args.tie), key=lambda r: (r[2], r[1]))
        print(
            f"best: working_diameter {best[0]} (val AP@0.5 {best[1]:.3f}, top {top:.3f}, "
            f"{best[2]:.0%} of images kept at their scale)"
        )
        if args.write:
            card_path = ROOT / "src" / "napari_instseg" / "zoo" / f"{name}.json"
            card = json.loads(card_path.read_text())
            card["working_diameter"] = best[0]
            card.setdefault("metrics", {})["working_diameter_val"] = {
                "candidates": candidates,
                "val_factors": list(args.val_factors),
                "protocol": f"diameter='auto' on every {args.every}. val image (centre crop "
                f"{args.crop} px) resized by each factor; mean AP@0.5 over images, then over "
                "factors (benchmarks/scale.py --working)",
                "best_ap50": round(best[1], 4),
                "rule": f"best mean; within {args.tie} of it, the candidate that resizes fewest",
            }
            card_path.write_text(json.dumps(card, indent=2) + "\n")
            print(f"written to {card_path}")


def factor_table(args) -> None:
    pairs = load_pairs(args.data, args.split, args.crop, kind=args.kind, every=args.every)
    print(
        f"{args.data}{'/' + args.kind if args.kind else ''} {args.split}, {len(pairs)} images "
        f"(centre crop {args.crop} px), AP@0.5 mean over images"
    )
    head = (
        f"{'model':20} {'factor':>6} {'off':>6} {'auto':>6} {'true':>6} "
        f"{'est<=15%':>8} {'|err|':>6} {'err':>6} {'t auto/off':>10} {'t est':>6}"
    )
    print(head)
    print("-" * len(head))
    for name in args.models:
        model = load_model(name)
        if not model.card.working_diameter:
            print(f"{name:20} (no working_diameter on the card: run --working --write)")
            continue
        for factor in args.factors:
            off, auto, true_ap, errors, ratios, est = [], [], [], [], [], []
            for image_name, image, mask in pairs:
                img, truth = resized(image, mask, factor)
                true_d = median_diameter([truth])
                t0 = time.perf_counter()
                a = run(segment_image(model, img, diameter="off"))
                t_off = time.perf_counter() - t0
                t0 = time.perf_counter()
                b = run(segment_image(model, img, diameter="auto"))
                t_auto = time.perf_counter() - t0
                c = run(segment_image(model, img, diameter=true_d or "off"))
                off.append(ap50(truth, a.labels))
                auto.append(ap50(truth, b.labels))
                true_ap.append(ap50(truth, c.labels))
                ratios.append(t_auto / max(t_off, 1e-9))
                est.append(b.seconds.get("estimate", 0.0))
                d = b.prediction.info["diameter"].get("diameter")
                if d and true_d:
                    errors.append(d / true_d - 1.0)
                if args.per_image:
                    print(
                        f"  {image_name} x{factor:g}: {int(truth.max())} objects, true "
                        f"{true_d or 0:.1f} px, auto {d or 0:.1f} px "
                        f"({(d / true_d - 1) if d and true_d else float('nan'):+.0%}), factor "
                        f"{b.prediction.info['diameter']['factor']:.3f}, AP@0.5 auto "
                        f"{auto[-1]:.3f} true {true_ap[-1]:.3f}",
                        flush=True,
                    )
            within = np.mean(np.abs(errors) <= 0.15) if errors else float("nan")
            med_err = statistics.median(np.abs(errors)) if errors else float("nan")
            bias = statistics.median(errors) if errors else float("nan")
            print(
                f"{name:20} {factor:6.2f} {np.mean(off):6.3f} {np.mean(auto):6.3f} "
                f"{np.mean(true_ap):6.3f} {within:8.0%} {med_err:6.1%} {bias:+6.1%} "
                f"{statistics.median(ratios):10.2f} {1000 * statistics.median(est):4.0f}ms",
                flush=True,
            )


def calibrate(args) -> None:
    from napari_instseg.core.appearance import to_model_input
    from napari_instseg.core.data.normalise import normalise_percentile
    from napari_instseg.core.scale import _raw_inscribed

    print("quick estimate: true median diameter / raw inscribed diameter, train splits")
    for data in ("dsb2018_fluo", "dsb2018_stained"):
        ratios = []
        for _, image, mask in load_pairs(data, "train", 10**6, every=args.every):
            x, _ = to_model_input(image, ndim=2, in_channels=1)
            raw, _ = _raw_inscribed(normalise_percentile(x)[0])
            true = median_diameter([mask])
            if raw and true:
                ratios.append(true / raw)
        q = np.percentile(ratios, [10, 50, 90])
        print(f"{data:16} n={len(ratios):4d} median {q[1]:.3f} (10-90 %: {q[0]:.2f}-{q[2]:.2f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--working", action="store_true", help="val sweep of the working diameter")
    p.add_argument("--write", action="store_true", help="--working: write the best to the card")
    p.add_argument("--ratios", nargs="*", type=float, default=[0.85, 1.0, 1.2])
    p.add_argument("--val-factors", nargs="*", type=float, default=[0.5, 1.0, 2.0, 3.0])
    p.add_argument("--tie", type=float, default=0.005, help="--working: see the rule")
    p.add_argument(
        "--forms",
        nargs="*",
        choices=["point", "range", "wide", "centre", "wide-centre"],
        help="--working: only these candidate forms (default: all)",
    )
    p.add_argument("--calibrate", action="store_true")
    p.add_argument("--factors", nargs="*", type=float, default=[1.0, 0.5, 1.5, 2.0, 3.0])
    p.add_argument("--data", default="dsb2018_fluo")
    p.add_argument("--split", default="test", help="the factor table's split (val to analyse)")
    p.add_argument("--per-image", action="store_true", help="also a line per image")
    p.add_argument("--kind", default=None, help="metadata 'kind' to keep (dsb2018_stained)")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--every", type=int, default=1, help="every n-th image (quicker runs)")
    args = p.parse_args()
    from napari_instseg.core.zoo import list_models

    shipped = {c.name for c, _ in list_models()}
    args.models = [m for m in (args.models or NUCLEI_MODELS) if m in shipped]
    if args.calibrate:
        calibrate(args)
    elif args.working:
        working_table(args)
    else:
        factor_table(args)


if __name__ == "__main__":
    main()
