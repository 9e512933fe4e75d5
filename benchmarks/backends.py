"""Every clustering back-end of a model on the same predictions (val and test).

The network is run once per split; each back-end then assembles the cached outputs with the
card's knobs that it shares (as ``recipes/pack_model.py --compare-backend`` does), and the
table prints AP@0.5, AP@0.7 and mAP@0.5:0.95 per split, with the gap to the best back-end on
test. ``--write`` puts the test rows into the card's ``metrics.test_by_backend`` (the card's
own back-end stays in ``metrics.test``).

    python benchmarks/backends.py [--models spoco-nuclei spoco-nuclei-full] [--write]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.data import load_folder
from napari_instseg.core.evaluation import predict_samples, score_predictions
from napari_instseg.core.jobs import run
from napari_instseg.core.pipeline import load_model, normalise_for
from napari_instseg.core.predict import PredictConfig

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = {"spoco": ("meanshift", "hdbscan", "consistency")}


def card_row(summary: dict, knobs: dict) -> dict:
    keys = [k for k in summary if k.startswith(("ap@", "map@", "f1", "sbd", "n_images"))]
    return {**{k: round(float(summary[k]), 4) for k in keys}, "knobs": knobs}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--models", nargs="*", default=["spoco-nuclei", "spoco-nuclei-full"])
    p.add_argument("--write", action="store_true", help="write test rows to the cards")
    args = p.parse_args()
    head = (
        f"{'model':18} {'back-end':11} {'val AP50':>8} {'test AP50':>9} {'AP70':>6} "
        f"{'mAP':>6} {'vs best':>7} {'sec':>5}"
    )
    print(head)
    print("-" * len(head))
    for name in args.models:
        model = load_model(name)
        folder = Path(args.data_root) / model.card.training.get("data", "dsb2018_fluo")

        def normalise(x, m=model):
            return normalise_for(m, x)

        split = {s: load_folder(folder, split=s, normalise=normalise) for s in ("val", "test")}
        preds = {
            s: run(predict_samples(model, v, config=PredictConfig(tile_size=512)))
            for s, v in split.items()
        }
        rows = {}
        for backend in BACKENDS.get(model.card.method, (model.card.backend,)):
            names = get_backend(backend).knob_names()
            knobs = {k: v for k, v in model.card.backend_config.items() if k in names}
            t0 = time.perf_counter()
            scored = {
                s: score_predictions(model, split[s], preds[s], backend=backend, knobs=knobs)[1]
                for s in ("val", "test")
            }
            rows[backend] = (scored, knobs, time.perf_counter() - t0)
        best = max(r[0]["test"]["ap@0.50"] for r in rows.values())
        for backend, (scored, _, secs) in rows.items():
            v, t = scored["val"], scored["test"]
            print(
                f"{name:18} {backend:11} {v['ap@0.50']:8.3f} {t['ap@0.50']:9.3f} "
                f"{t['ap@0.70']:6.3f} {t['map@0.50:0.95']:6.3f} "
                f"{t['ap@0.50'] - best:+7.3f} {secs:5.0f}",
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
