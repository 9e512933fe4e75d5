"""Does fine-tuning carry to the user's *other* images? A new modality, a few objects.

Parents: the shipped models that learn from sparse labels (``embedseg-nuclei``,
``spoco-nuclei``), trained on fluorescence only. Target: ``dsb2018_stained``, kind
``stained_colour`` (H&E-like RGB), a modality they never saw.

A simulated user annotates ``k`` whole objects (``--objects``, default 10 20 50) on 1-3
train-split images (as few as hold ``k`` objects off the border; half of them among those
the parent gets wrong, half at random) and paints the background within 8 px of them; the
rest of each image stays unknown. The model is fine-tuned with the Fine-tune widget's
defaults (:class:`~napari_instseg.core.finetune.FinetuneConfig`), then scored through the
default segment path (appearance and diameter ``auto``) on **every stained_colour test
image** (none annotated) and on the ``dsb2018_fluo`` test split (what the parent knew).

Reference rows in the same table: the parent zero-shot, and the ceiling (``--ceiling
MODEL``: the same method trained on the whole stained_colour train split,
``recipes/stained_ceiling.sh``). "gap closed" = (fine-tuned - zero-shot) / (ceiling -
zero-shot) on the stained test AP@0.5. Medians over seeds.

    python benchmarks/finetune_transfer.py [--models embedseg-nuclei] [--objects 10 20 50]
        [--seeds 0 1 2] [--ceiling embedseg-stained-ceiling] [--fluo-every 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from napari_instseg.core.data.datasets import read_column, read_image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
STAINED = SHARED / "dsb2018_stained"
FLUO = SHARED / "dsb2018_fluo"


def pairs(root: Path, split: str, kind: str | None = None, every: int = 1):
    splits, kinds = read_column(root, "split"), read_column(root, "kind")
    names = sorted(n for n in splits if splits[n] == split and (not kind or kinds[n] == kind))
    return [
        (n, read_image(root / "images" / f"{n}.tif"), read_image(root / "masks" / f"{n}.tif"))
        for n in names[::every]
    ]


def scores(model, items) -> tuple[float, float]:
    """Mean AP@0.5 and DSB score over ``items`` through the default segment path."""
    from napari_instseg.core.jobs import run
    from napari_instseg.core.metrics import DSB_THRESHOLDS, average_precision_dsb
    from napari_instseg.core.pipeline import segment_image

    ap, dsb = [], []
    for _, image, truth in items:
        labels = run(segment_image(model, image)).labels
        per = [average_precision_dsb(truth, labels, iou_threshold=t) for t in DSB_THRESHOLDS]
        ap.append(per[0])
        dsb.append(float(np.mean(per)))
    return float(np.mean(ap)), float(np.mean(dsb))


def gap_closed(value: float, zero: float, ceiling: float | None) -> float:
    """Share of the zero-shot-to-ceiling gap that ``value`` closes (nan without a ceiling)."""
    if ceiling is None or ceiling <= zero:
        return float("nan")
    return (value - zero) / (ceiling - zero)


def _border_free(truth):
    border = np.unique(np.concatenate([truth[0], truth[-1], truth[:, 0], truth[:, -1]]))
    return np.setdiff1d(np.unique(truth), np.append(border, 0))


def annotate(parent, train, k: int, rng):
    """The simulated user's annotations: ``k`` objects over as few train images as hold them
    (at most 3), half among those the parent gets wrong, half at random, background painted
    within 8 px (``benchmarks/finetune.py``'s user). Returns them and the objects placed."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "bench_finetune", Path(__file__).with_name("finetune.py")
    )
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from napari_instseg.core.finetune import AnnotatedImage
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import segment_image

    order = rng.permutation(len(train))
    chosen, total = [], 0
    for i in order:  # images in random order until they hold k objects (at most 3 images)
        n = _border_free(train[i][2]).size
        if n < 5:
            continue
        chosen.append(i)
        total += n
        if total >= k or len(chosen) == 3:
            break
    out, left = [], k
    for j, i in enumerate(chosen):
        name, image, truth = train[i]
        share = left if j == len(chosen) - 1 else min(left, _border_free(truth).size)
        first = run(segment_image(parent, image)).labels
        wrong = bench.wrong_objects(truth, first)
        annotation, ids = bench.simulated_annotation(
            truth, share, rng, wrong=wrong, wrong_share=0.5
        )
        out.append(AnnotatedImage(name, image, annotation))
        left -= len(ids)
        if left <= 0:
            break
    return out, k - max(left, 0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=["embedseg-nuclei", "spoco-nuclei"])
    p.add_argument("--objects", nargs="*", type=int, default=[10, 20, 50])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--ceiling", nargs="*", default=[], help="ceiling model per parent, in order")
    p.add_argument("--fluo-every", type=int, default=1, help="every n-th fluorescence test image")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument(
        "--split",
        choices=["test", "val"],
        default="test",
        help="score on the test splits (the report) or the val splits (choosing settings)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a FinetuneConfig value other than the widget's default, e.g. adapt_norm=true",
    )
    p.add_argument(
        "--context",
        type=int,
        default=0,
        help="also hand the fine-tune this many other (unannotated) stained train images",
    )
    args = p.parse_args()

    import torch

    from napari_instseg.core.checkpoint import load_model as load_files
    from napari_instseg.core.configs import config_from_dict, parse_assignments
    from napari_instseg.core.finetune import FinetuneConfig, finetune
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import Model, load_model

    if args.threads:
        torch.set_num_threads(args.threads)
    settings = parse_assignments(args.set)
    config_from_dict(FinetuneConfig, settings)  # refuse a typo before any work
    train = pairs(STAINED, "train", "stained_colour")
    test = pairs(STAINED, args.split, "stained_colour")
    fluo = pairs(FLUO, args.split, every=args.fluo_every)
    print(
        f"stained_colour: {len(train)} train images to annotate from, {len(test)} "
        f"{args.split} images; dsb2018_fluo {args.split}: {len(fluo)} images; fine-tune: "
        "FinetuneConfig defaults "
        f"({FinetuneConfig.iterations} iterations, lr {FinetuneConfig.lr}, replay "
        f"{FinetuneConfig.replay}) with "
        f"{settings or 'nothing'} changed, {args.context} context images; torch threads "
        f"{torch.get_num_threads()}"
    )
    head = (
        f"{'parent':18} {'row':14} {'n':>2} {'stained AP50':>12} {'stained DSB':>11} "
        f"{'fluo AP50':>9} {'fluo DSB':>8} {'gap closed':>10} {'minutes':>7}"
    )
    print(head)
    print("-" * len(head))
    for index, name in enumerate(args.models):
        parent = load_model(name)
        zero = (*scores(parent, test), *scores(parent, fluo))
        print(
            f"{name:18} {'zero-shot':14} {'':>2} {zero[0]:12.3f} {zero[1]:11.3f} "
            f"{zero[2]:9.3f} {zero[3]:8.3f}",
            flush=True,
        )
        ceiling = None
        if index < len(args.ceiling):
            top = load_model(args.ceiling[index])
            ceiling = (*scores(top, test), *scores(top, fluo))
            print(
                f"{name:18} {'ceiling':14} {'':>2} {ceiling[0]:12.3f} {ceiling[1]:11.3f} "
                f"{ceiling[2]:9.3f} {ceiling[3]:8.3f}",
                flush=True,
            )
        for k in args.objects:
            rows = []
            for seed in args.seeds:
                rng = np.random.default_rng(seed)
                t0 = time.perf_counter()
                data, got = annotate(parent, train, k, rng)
                used = {d.name for d in data}
                others = [im for n, im, _ in train if n not in used]
                picks = rng.permutation(len(others))[: args.context]
                with tempfile.TemporaryDirectory() as tmp:
                    result = run(
                        finetune(
                            parent,
                            data,
                            name="bench-transfer",
                            run_dir=Path(tmp) / "run",
                            models_dir=tmp,
                            config=config_from_dict(
                                FinetuneConfig, {"compare_parent": False, **settings, "seed": seed}
                            ),
                            context=[others[i] for i in picks],
                        )
                    )
                    tuned = Model.from_card(*load_files(result.model_path))
                row = (*scores(tuned, test), *scores(tuned, fluo))
                minutes = (time.perf_counter() - t0) / 60
                rows.append(row)
                gap = gap_closed(row[0], zero[0], ceiling and ceiling[0])
                print(
                    f"{name:18} {f'k={k} seed {seed}':14} {len(data):2d} {row[0]:12.3f} "
                    f"{row[1]:11.3f} {row[2]:9.3f} {row[3]:8.3f} {gap:10.0%} {minutes:7.1f}"
                    f"{'' if got == k else f'  ({got} objects)'}",
                    flush=True,
                )
            med = [statistics.median(c) for c in zip(*rows, strict=True)]
            gap = gap_closed(med[0], zero[0], ceiling and ceiling[0])
            print(
                f"{name:18} {f'k={k} median':14} {'':>2} {med[0]:12.3f} {med[1]:11.3f} "
                f"{med[2]:9.3f} {med[3]:8.3f} {gap:10.0%}   fluo change {med[2] - zero[2]:+.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
