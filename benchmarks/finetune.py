"""Fine-tuning from ~10 annotated objects: iterations per second and AP before/after.

For each test image (a 512² crop; DSB2018 by default) and each annotation seed, a simulated user
annotates 10 whole nuclei (chosen among those not touching the crop border: five the parent
model got wrong and five at random, as the user's guide asks) and paints the background
within 8 px of them. The model is fine-tuned with the Train widget's defaults
(``FinetuneConfig``; here with nothing held out, since the image's own remaining objects are
the test) and scored on the image's *remaining* nuclei, which it never saw: AP@0.5, AP@0.7
and the DSB score (AP averaged over IoU 0.5, 0.55 ... 0.95) on the objects that were not
annotated (predictions touching none of them are ignored), for the parent model and the
fine-tuned one with the knobs its card publishes (the parent's, with the merge distance
re-chosen after training: ``FinetuneConfig.refit_knobs``). "AP50 old md" is the fine-tuned
network with the parent's knobs unchanged, "md" the merge distance published, and
"annotated ok" how many of the 10 annotated objects the parent and the fine-tuned model get
right (IoU >= 0.5).

Speed: the median time of one training step (batch 4, 128² crops) and the wall-clock rate
including validation-free overheads. Target: >= 2 it/s on 2 CPU cores.

``--data usiigaci_phase`` runs the same on phase-contrast cells, a modality the nuclei model
never saw (the case where a user most needs to fine-tune).

``--wrong-share 1.0`` annotates objects the parent got wrong first (random ones fill up),
``--choose random`` ten random ones; ``--every 50`` also scores the remaining objects along
the run.

    python benchmarks/finetune.py [--model spoco-nuclei] [--data dsb2018_fluo] [--seeds 0 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from napari_instseg.core.finetune import FinetuneConfig

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
IMAGES = {
    "dsb2018_fluo": (
        "547ef286ee5f4e5d",
        "9620c33d8ef2772d",
        "aaa52100fafaa508",
        "76faaed50ed6ea68",
    ),
    # a new modality for a nuclei model: phase-contrast cells
    "usiigaci_phase": ("usiigaci_set15", "usiigaci_set45"),
}
TARGET_IT_S = 2.0


def simulated_annotation(
    truth: np.ndarray,
    n: int,
    rng: np.random.Generator,
    *,
    wrong: np.ndarray | None = None,
    wrong_share: float = 1.0,
):
    """``n`` whole objects off the border + background within 8 px of them.

    With ``wrong`` (ids the parent model got wrong) the user corrects those first, as the
    widget's workflow suggests: ``wrong_share`` of the ``n`` objects (rounded up) come from
    them, random other objects fill up the rest.
    """
    from napari_instseg.core.data.sparse import BACKGROUND_LABEL

    border = np.unique(np.concatenate([truth[0], truth[-1], truth[:, 0], truth[:, -1]]))
    ids = np.setdiff1d(np.unique(truth), np.append(border, 0))
    first = np.intersect1d(ids, wrong) if wrong is not None else ids[:0]
    k = min(int(np.ceil(n * wrong_share)), first.size)
    chosen = rng.choice(first, size=k, replace=False)
    rest = np.setdiff1d(ids, chosen)
    if chosen.size < n:
        extra = rng.choice(rest, size=min(n - chosen.size, rest.size), replace=False)
        chosen = np.concatenate([chosen, extra])
    keep = np.isin(truth, chosen)
    annotation = np.where(keep, truth, 0).astype(np.uint32)
    annotation[ndi.binary_dilation(keep, iterations=8) & (truth == 0)] = BACKGROUND_LABEL
    return annotation, chosen


def wrong_objects(truth: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Ids of true objects that no predicted object matches at IoU >= 0.5."""
    from napari_instseg.core.metrics import match_instances

    matched = match_instances(truth, labels, iou_threshold=0.5).true_ids
    return np.setdiff1d(np.unique(truth[truth > 0]), matched)


def segment(model, image, knobs=None):
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import segment_image

    return run(segment_image(model, image, knobs=knobs)).labels


def fixed_objects(labels, truth, chosen) -> int:
    """How many of the annotated objects ``labels`` gets right (IoU >= 0.5)."""
    from napari_instseg.core.metrics import match_instances

    annotated = np.where(np.isin(truth, chosen), truth, 0)
    return len(match_instances(annotated, labels, iou_threshold=0.5).true_ids)


def remaining_ap(labels, truth, chosen):
    """AP@0.5, AP@0.7 and the DSB score (mean AP over IoU 0.5:0.95) on the remaining objects."""
    from napari_instseg.core.metrics import DSB_THRESHOLDS, average_precision_annotated

    rest = np.where(np.isin(truth, chosen), 0, truth)
    ap = {t: average_precision_annotated(rest, labels, iou_threshold=t) for t in DSB_THRESHOLDS}
    return [ap[0.5], ap[0.7], float(np.mean(list(ap.values())))]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="spoco-nuclei")
    p.add_argument("--iterations", type=int, default=FinetuneConfig.iterations)
    p.add_argument("--lr", type=float, default=FinetuneConfig.lr)
    p.add_argument("--anchor-weight", type=float, default=FinetuneConfig.anchor_weight)
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    p.add_argument(
        "--every",
        type=int,
        default=0,
        help="also score the remaining objects every N steps along the run (0: only the end)",
    )
    p.add_argument(
        "--method-config",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="override the parent's method config while fine-tuning, e.g. w_foreground=0 "
        "delta_var=0.25 (numbers only)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="another FinetuneConfig value, e.g. tune=first_block",
    )
    p.add_argument("--data", choices=sorted(IMAGES), default="dsb2018_fluo")
    p.add_argument("--images", nargs="*", help="test-split image names (default: per --data)")
    p.add_argument(
        "--choose",
        choices=["wrong", "random"],
        default="wrong",
        help="annotate objects the parent got wrong (default) or random ones",
    )
    p.add_argument(
        "--wrong-share",
        type=float,
        default=0.5,
        help="with --choose wrong: the share of the objects taken from the wrong ones "
        "(the rest at random)",
    )
    args = p.parse_args()
    data = SHARED / args.data
    names = args.images or IMAGES[args.data]

    import tifffile
    import torch

    from napari_instseg.core.configs import config_from_dict, parse_assignments
    from napari_instseg.core.finetune import AnnotatedImage, finetune
    from napari_instseg.core.jobs import Preview, Progress, run
    from napari_instseg.core.pipeline import Model, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = {k: float(v) for k, v in (kv.split("=", 1) for kv in args.method_config)}
    settings = parse_assignments(args.set)
    config_from_dict(FinetuneConfig, settings)  # refuse a typo before any work
    print(
        f"torch threads: {torch.get_num_threads()}; model {args.model}; data {args.data}; "
        f"{args.iterations} iterations at lr {args.lr}, anchor weight {args.anchor_weight}, "
        f"method config overrides {overrides or 'none'}, fine-tune settings "
        f"{settings or 'defaults'}, {args.objects} annotated objects "
        f"per image (chosen: "
        f"{args.choose}{f', wrong share {args.wrong_share}' if args.choose == 'wrong' else ''})"
    )
    header = (
        f"{'image':18} {'seed':>4} {'step it/s':>9} {'wall it/s':>9} "
        f"{'AP50 before':>11} {'AP50 after':>10} {'AP70 before':>11} {'AP70 after':>10} "
        f"{'DSB before':>10} {'DSB after':>9} {'AP50 old md':>11} {'md':>4} {'annotated ok':>12}"
    )
    print(header)
    rows = []
    for name in names:
        image = tifffile.imread(data / "images" / f"{name}.tif")[:512, :512]
        truth = tifffile.imread(data / "masks" / f"{name}.tif")[:512, :512]
        for seed in args.seeds:
            parent = load_model(args.model)
            if overrides:
                parent = dataclasses.replace(
                    parent, config=dataclasses.replace(parent.config, **overrides)
                )
            first = segment(parent, image)
            wrong = wrong_objects(truth, first) if args.choose == "wrong" else None
            annotation, chosen = simulated_annotation(
                truth,
                args.objects,
                np.random.default_rng(seed),
                wrong=wrong,
                wrong_share=args.wrong_share,
            )
            before = remaining_ap(first, truth, chosen)
            stamps: list[float] = []
            along: list[str] = []

            def on_event(event, stamps=stamps, along=along, truth=truth, chosen=chosen):
                if isinstance(event, Progress) and event.stage == "train":
                    stamps.append(time.perf_counter())
                elif isinstance(event, Preview):
                    along.append(f"{event.step}:{remaining_ap(event.data, truth, chosen)[0]:.3f}")

            config = config_from_dict(
                FinetuneConfig,
                {
                    "iterations": args.iterations,
                    "lr": args.lr,
                    "anchor_weight": args.anchor_weight,
                    "held_out_fraction": 0.0,
                    "preview_every": args.every,
                    **settings,
                    "seed": seed,
                },
            )
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                result = run(
                    finetune(
                        parent,
                        [AnnotatedImage(name, image, annotation)],
                        name="bench-finetune",
                        run_dir=Path(tmp) / "run",
                        models_dir=tmp,
                        config=config,
                        preview=image if args.every else None,
                    ),
                    on_event,
                )
                wall = time.perf_counter() - t0
                from napari_instseg.core.checkpoint import load_model as load_files

                tuned = Model.from_card(*load_files(result.model_path))
            labels = segment(tuned, image)
            after = remaining_ap(labels, truth, chosen)
            # the same network with the parent's knobs (what it would do without the refit)
            kept = segment(tuned, image, dict(parent.card.backend_config))
            old_md = remaining_ap(kept, truth, chosen)
            md = tuned.card.backend_config.get("merge_distance", float("nan"))
            fixed = (fixed_objects(first, truth, chosen), fixed_objects(labels, truth, chosen))
            steps = np.diff(stamps)
            step_rate = 1.0 / float(np.median(steps))
            wall_rate = args.iterations / wall
            rows.append((step_rate, wall_rate, *before, *after, old_md[0], *fixed))
            print(
                f"{name:18} {seed:4d} {step_rate:9.2f} {wall_rate:9.2f} {before[0]:11.3f} "
                f"{after[0]:10.3f} {before[1]:11.3f} {after[1]:10.3f} {before[2]:10.3f} "
                f"{after[2]:9.3f} {old_md[0]:11.3f} {md:4.1f} {fixed[0]:5d} -> {fixed[1]:2d}",
                flush=True,
            )
            if along:
                print(f"{'':18} {'':4} AP50 along the run (step:AP): {' '.join(along)}", flush=True)
    cols = list(zip(*rows, strict=True))
    med = [statistics.median(c) for c in cols]
    print(
        f"{'median':18} {'':4} {med[0]:9.2f} {med[1]:9.2f} {med[2]:11.3f} {med[5]:10.3f} "
        f"{med[3]:11.3f} {med[6]:10.3f} {med[4]:10.3f} {med[7]:9.3f}"
    )
    for i, metric in enumerate(("AP@0.5", "AP@0.7", "DSB score")):
        gains = [r[5 + i] - r[2 + i] for r in rows]
        print(
            f"{metric} on the remaining objects: improved in {sum(g > 0 for g in gains)}/"
            f"{len(gains)} runs, unchanged in {sum(g == 0 for g in gains)}, worse in "
            f"{sum(g < 0 for g in gains)}; change median {statistics.median(gains):+.3f}, "
            f"mean {statistics.mean(gains):+.3f}, worst {min(gains):+.3f}"
        )
    gains = [r[8] - r[2] for r in rows]
    print(
        f"AP@0.5 with the parent's knobs instead: improved in {sum(g > 0 for g in gains)}/"
        f"{len(gains)} runs, worse in {sum(g < 0 for g in gains)}; change mean "
        f"{statistics.mean(gains):+.3f}"
    )
    print(
        f"annotated objects right (IoU >= 0.5): {sum(r[9] for r in rows)} of "
        f"{args.objects * len(rows)} with the parent, {sum(r[10] for r in rows)} after"
    )
    print(
        f"step rate target >= {TARGET_IT_S} it/s: {'met' if med[0] >= TARGET_IT_S else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
