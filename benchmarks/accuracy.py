"""Accuracy of every shipped model on the test splits of ../shared/data.

Prints one row per (model, dataset): DSB AP = TP/(TP+FP+FN) at IoU 0.5...0.9 (mean over
images), mean AP over 0.5:0.95, F1@0.5, the cell-segmentation challenge's F1 (border cells
removed) and SBD, with the post-processing knobs from the card.

    python benchmarks/accuracy.py [--data-root ../shared/data] [--models NAME ...] [--cross]

``--cross`` also scores every model on the other datasets' test splits. A model trained on
several datasets (``data`` "a+b" on its card) is scored on each. For a back-end that routes
(``detection_watershed``) the last column counts the routes its images took.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections import Counter
from pathlib import Path

from napari_instseg.core.data import load_folder, normalise_percentile
from napari_instseg.core.evaluation import predict_samples, score_predictions
from napari_instseg.core.jobs import run
from napari_instseg.core.pipeline import assembly_report, load_model
from napari_instseg.core.predict import PredictConfig
from napari_instseg.core.zoo import list_models, zoo_dir

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ("dsb2018_fluo", "usiigaci_phase")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--models", nargs="*")
    p.add_argument("--split", default="test")
    p.add_argument("--cross", action="store_true")
    args = p.parse_args()

    shipped = [c for c, path in list_models() if path.parent == zoo_dir()]
    cards = [c for c in shipped if not args.models or c.name in args.models]
    print(f"machine: {platform.processor() or platform.machine()}, split: {args.split}")
    header = (
        f"{'model':24} {'data':16} {'n':>3} "
        + " ".join(f"AP@{t:.1f}" for t in (0.5, 0.6, 0.7, 0.8, 0.9))
        + "  mAP(.5:.95)  F1@0.5  F1chal    SBD   sec  routes"
    )
    print(header)
    print("-" * len(header))
    for card in cards:
        model = load_model(card.name)
        norm = card.normalisation
        own = card.training.get("data", "").split("+")
        datasets = own + [d for d in DATASETS if d not in own] if args.cross else own
        for data in datasets:
            folder = Path(args.data_root) / data
            if not folder.is_dir():
                print(f"{card.name:24} {data:16} (data not found)")
                continue
            t0 = time.perf_counter()
            samples = load_folder(
                folder,
                split=args.split,
                normalise=lambda x, n=norm: normalise_percentile(x, low=n["low"], high=n["high"]),
            )
            preds = run(predict_samples(model, samples, config=PredictConfig(tile_size=512)))
            _, s = score_predictions(model, samples, preds)
            aps = " ".join(f"{s[f'ap@{t:.2f}']:6.3f}" for t in (0.5, 0.6, 0.7, 0.8, 0.9))
            routes = Counter(
                assembly_report(
                    model,
                    model.method.decode(p.raw, model.config),
                    modality=p.info.get("modality", ""),
                ).get("route", "")
                for p in preds
            )
            route_text = " ".join(f"{k} {v}" for k, v in sorted(routes.items()) if k)
            print(
                f"{card.name:24} {data:16} {len(samples):3d} {aps}  {s['map@0.50:0.95']:11.3f}"
                f"  {s['f1@0.50']:6.3f}  {s['f1_challenge']:6.3f}  {s['sbd']:6.3f}"
                f" {time.perf_counter() - t0:5.0f}  {route_text}"
            )


if __name__ == "__main__":
    main()
