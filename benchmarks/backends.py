"""Every clustering back-end of a model on the same predictions (val and test).

The network is run once per split; each back-end then assembles the cached outputs with the
card's knobs that it shares (as ``recipes/pack_model.py --compare-backend`` does), and the
table prints AP@0.5, AP@0.7 and mAP@0.5:0.95 per split, with the gap to the best back-end on
test. ``--write`` puts the test rows into the card's ``metrics.test_by_backend`` (the card's
own back-end stays in ``metrics.test``). ``--splits val --limit 12`` scores the first 12 val
images only (AP70 and mAP are then of the last split named); ``--labels DIR`` saves every
label image (``MODEL_BACKEND_SPLIT_IMAGE.npy``), to compare two versions of the back-ends
image by image.

    python benchmarks/backends.py [--models spoco-nuclei spoco-nuclei-full] [--write]
        [--splits val,test] [--limit N] [--labels DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.data import load_folder
from napari_instseg.core.evaluation import AP_THRESHOLDS, predict_samples
from napari_instseg.core.jobs import run
from napari_instseg.core.metrics import evaluate_pair, summarise
from napari_instseg.core.pipeline import load_model, normalise_for
from napari_instseg.core.predict import PredictConfig
from napari_instseg.core.tuning import Tuner

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"spoco": ("meanshift", "hdbscan", "consistency")}


def card_row(summary: dict, knobs: dict) -> dict:
    keys = [k for k in summary if k.startswith(("ap@", "map@", "f1", "sbd", "n_images"))]
    row = {k: round(float(summary[k]), 4) for k in keys}
    if "n_images" in row:
        row["n_images"] = int(row["n_images"])
    return {**row, "knobs": knobs}


def score(model, samples, predictions, backend, knobs, labels_dir, prefix) -> dict:
    """Mean metrics of one back-end over the samples (labels saved when asked)."""
    rows = []
    for sample, prediction in zip(samples, predictions, strict=True):
        labels = Tuner(model, prediction).assemble(backend, dict(knobs)).labels
        rows.append(evaluate_pair(sample.labels, labels, thresholds=AP_THRESHOLDS))
        if labels_dir:
            np.save(Path(labels_dir) / f"{prefix}_{sample.name}.npy", labels)
    return summarise(rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--models", nargs="*", default=["spoco-nuclei", "spoco-nuclei-full"])
    p.add_argument("--write", action="store_true", help="write test rows to the cards")
    p.add_argument("--splits", default="val,test", help="comma-separated splits to score")
    p.add_argument("--limit", type=int, default=0, help="first N images of each split (0: all)")
    p.add_argument("--labels", help="save every label image in this folder")
    args = p.parse_args()
    splits = args.splits.split(",")
    if args.write and (args.limit or "test" not in splits):
        p.error("--write needs the whole test split")
    if args.labels:
        Path(args.labels).mkdir(parents=True, exist_ok=True)
    last = splits[-1]
    head = (
        f"{'model':18} {'back-end':11} "
        + " ".join(f"{s + ' AP50':>10}" for s in splits)
        + f" {'AP70':>6} {'mAP':>6} {'vs best':>7} {'sec':>5}"
    )
    print(head)
    print("-" * len(head))
    for name in args.models:
        model = load_model(name)
        folder = Path(args.data_root) / model.card.training.get("data", "dsb2018_fluo")

        def normalise(x, m=model):
            return normalise_for(m, x)

        data = {}
        for s in splits:
            samples = load_folder(folder, split=s, normalise=normalise)
            data[s] = samples[: args.limit] if args.limit else samples
        preds = {
            s: run(predict_samples(model, v, config=PredictConfig(tile_size=512)))
            for s, v in data.items()
        }
        rows = {}
        for backend in BACKENDS.get(model.card.method, (model.card.backend,)):
            names = get_backend(backend).knob_names()
            knobs = {k: v for k, v in model.card.backend_config.items() if k in names}
            t0 = time.perf_counter()
            scored = {
                s: score(
                    model, data[s], preds[s], backend, knobs, args.labels, f"{name}_{backend}_{s}"
                )
                for s in splits
            }
            rows[backend] = (scored, knobs, time.perf_counter() - t0)
        best = max(r[0][last]["ap@0.50"] for r in rows.values())
        for backend, (scored, _, secs) in rows.items():
            t = scored[last]
            print(
                f"{name:18} {backend:11} "
                + " ".join(f"{scored[s]['ap@0.50']:10.3f}" for s in splits)
                + f" {t['ap@0.70']:6.3f} {t['map@0.50:0.95']:6.3f}"
                f" {t['ap@0.50'] - best:+7.3f} {secs:5.0f}",
                flush=True,
            )
        if args.write:
            path = ROOT / "src" / "napari_instseg" / "zoo" / f"{name}.json"
            card = json.loads(path.read_text())
            card.setdefault("metrics", {})["test_by_backend"] = {
                b: card_row(r[0]["test"], r[1]) for b, r in rows.items() if b != model.card.backend
            }
            path.write_text(json.dumps(card, indent=2) + "\n")
            print(f"written to {path}")


if __name__ == "__main__":
    main()
