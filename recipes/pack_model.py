"""Turn a training run's best checkpoint into a shipped zoo model with measured numbers.

1. load the run's best checkpoint;
2. predict the val split once, then grid-search the back-end knobs on it (AP@0.5);
3. predict the test split and score it with the tuned knobs (AP at 0.5...0.9, mAP, F1, SBD);
4. write NAME.safetensors + NAME.json into src/napari_instseg/zoo/ with those numbers.

With several ``--data`` folders (one model for several datasets) the knobs are tuned on the
val splits with each folder weighing the same, and the card gets each folder's test numbers
(``metrics.test_by_data``) and their mean over folders (``metrics.test``).

Usage (from the repository root):
    python recipes/pack_model.py runs/threeclass-nuclei/best.json --name threeclass-nuclei \
        --data ../shared/data/dsb2018_fluo --grid seed_threshold=0.5,0.6,0.7,0.8 \
        --grid fg_threshold=0.4,0.5,0.6 --grid min_size=0,15,30
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.checkpoint import save_model
from napari_instseg.core.configs import config_to_dict, replace_config
from napari_instseg.core.data import load_folder
from napari_instseg.core.data.datasets import read_column
from napari_instseg.core.evaluation import (
    metrics_for_card,
    predict_samples,
    score_predictions,
    tune_knobs,
)
from napari_instseg.core.jobs import run
from napari_instseg.core.pipeline import load_model, normalise_for
from napari_instseg.core.predict import PredictConfig

ZOO = Path(__file__).resolve().parents[1] / "src" / "napari_instseg" / "zoo"


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    grid = {}
    for item in items or []:
        key, _, values = item.partition("=")
        grid[key] = [v for v in values.split(",") if v]
    return grid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--name", required=True)
    p.add_argument("--data", required=True, action="append")
    p.add_argument("--grid", action="append", default=[])
    p.add_argument("--out", default=str(ZOO))
    p.add_argument("--notes", default="", help="training notes for the card")
    p.add_argument(
        "--compare-backend",
        action="append",
        default=[],
        help="also score test with this back-end (its defaults plus the tuned knobs it shares)",
    )
    p.add_argument(
        "--appearance",
        default="as-is",
        choices=["as-is", "auto"],
        help="map stained/brightfield images into the model's appearance (as segmenting does)",
    )
    p.add_argument(
        "--by-kind",
        action="store_true",
        help="also report test per value of the folders' metadata 'kind' column",
    )
    p.add_argument(
        "--half",
        action="store_true",
        help="ship float16 weights; every number is measured with them",
    )
    args = p.parse_args()

    model = load_model(args.checkpoint)
    if args.half:
        # Measure exactly what ships: round every weight through float16 first.
        with torch.no_grad():
            for value in model.net.state_dict().values():
                if value.is_floating_point():
                    value.copy_(value.half().float())

    def normalise(x):  # as the pipeline normalises for this card (core/pipeline.py)
        return normalise_for(model, x)

    pconf = PredictConfig(tile_size=512, halo=32)
    folders = [Path(d) for d in args.data]
    looks = {"appearance": args.appearance, "trained_on": model.card.modality or "fluorescence"}
    vals = [load_folder(d, split="val", normalise=normalise, **looks) for d in folders]
    tests = [load_folder(d, split="test", normalise=normalise, **looks) for d in folders]
    val_preds = [run(predict_samples(model, v, config=pconf)) for v in vals]
    test_preds = [run(predict_samples(model, t, config=pconf)) for t in tests]
    groups = [d.name for d, v in zip(folders, vals, strict=True) for _ in v]
    grid = parse_grid(args.grid)
    be = model.backend_config()
    # the knob's own type ("false" is False for a bool knob, not a true string)
    grid = {k: [getattr(replace_config(be, {k: v}), k) for v in vs] for k, vs in grid.items()}
    # Each folder weighs the same in the tuning, whatever its number of images.
    knobs, val_score, trials = tune_knobs(
        model, sum(vals, []), sum(val_preds, []), grid, groups=groups
    )
    print(f"tuned on val ({sum(map(len, vals))} images): {knobs} -> AP@0.5 {val_score:.4f}")

    def mean_over_folders(summaries: dict) -> dict:
        keys = set.intersection(*(set(v) for v in summaries.values()))
        out = {k: sum(v[k] for v in summaries.values()) / len(summaries) for k in keys}
        out["n_images"] = sum(v.get("n_images", 0) for v in summaries.values())
        return out

    def score(split_samples, split_preds, **kw) -> tuple[dict, dict]:
        """Each folder's summary and their mean (the plain summary for one folder)."""
        by_data = {
            d.name: score_predictions(model, ss, ps, **kw)[1]
            for d, ss, ps in zip(folders, split_samples, split_preds, strict=True)
        }
        return by_data, mean_over_folders(by_data)

    _, val_summary = score(vals, val_preds, knobs=knobs)
    _, untuned = score(tests, test_preds)
    test_by_data, test_summary = score(tests, test_preds, knobs=knobs)
    for name, summary in test_by_data.items():
        print(f"test {name} ({int(summary['n_images'])} images): AP@0.5 {summary['ap@0.50']:.4f}")
    by_kind = {}
    if args.by_kind:
        for d, ss, ps in zip(folders, tests, test_preds, strict=True):
            kind_of = read_column(d, "kind")
            for kind in sorted({kind_of.get(s.name, "") for s in ss} - {""}):
                idx = [i for i, s in enumerate(ss) if kind_of.get(s.name) == kind]
                summary = score_predictions(
                    model, [ss[i] for i in idx], [ps[i] for i in idx], knobs=knobs
                )[1]
                by_kind[f"{d.name}/{kind}"] = metrics_for_card(summary)
                print(f"test {d.name}/{kind} ({len(idx)} images): AP@0.5 {summary['ap@0.50']:.4f}")
    tuned_cfg = config_to_dict(model.backend_config(knobs=knobs))
    by_backend = {}
    for name in args.compare_backend:
        shared = {k: v for k, v in knobs.items() if k in get_backend(name).knob_names()}
        _, summary = score(tests, test_preds, backend=name, knobs=shared)
        by_backend[name] = {**metrics_for_card(summary), "knobs": shared}
        print(f"test with {name} {shared}: AP@0.5 {summary['ap@0.50']:.4f}")
    training = dict(model.card.training)
    history = Path(args.checkpoint).with_name("history.json")
    if history.exists():  # the loss every 250 iterations, for the card
        losses = json.loads(history.read_text())["loss"]
        training["loss_curve"] = [[s, round(v, 4)] for s, v, *_ in losses if s % 250 == 0]
    if args.notes:
        training["notes"] = args.notes
    card = replace(
        model.card,
        name=args.name,
        training=training,
        backend_config=tuned_cfg,
        metrics={
            "val": metrics_for_card(val_summary),
            "test": metrics_for_card(test_summary),
            "test_default_knobs": metrics_for_card(untuned),
            "protocol": "mean over images of DSB AP = TP/(TP+FP+FN), one-to-one matching; "
            "knobs tuned on val (AP@0.5), reported on test",
            "tuning_grid": {k: list(v) for k, v in grid.items()},
            **({"test_by_backend": by_backend} if by_backend else {}),
            **({"test_by_kind": by_kind} if by_kind else {}),
            **(
                {
                    "test_by_data": {k: metrics_for_card(v) for k, v in test_by_data.items()},
                    "test_is": "mean over the data folders of their test means",
                }
                if len(folders) > 1
                else {}
            ),
        },
        weights_sha256="",
        created="",
    )
    path = save_model(args.out, args.name, model.net, card, half=args.half)
    print(json.dumps(card.metrics["test"], indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
