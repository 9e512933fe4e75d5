"""Joining touching fragments (``merge_distance``) for the embedding back-ends.

Mean-shift and HDBSCAN on a diffuse embedding leave several modes inside one nucleus; each
becomes an object and costs a false positive. ``merge_distance`` joins touching objects whose
mean embeddings are closer than it. For each model: predict the val and test splits once,
choose ``merge_distance`` on val (AP@0.5, the card's other knobs fixed), report test AP with
the card's knobs and with the chosen distance, per back-end.

    python benchmarks/merge_fragments.py [--models spoco-nuclei spoco-nuclei-full]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from napari_instseg.core.data import load_folder, normalise_percentile
from napari_instseg.core.evaluation import predict_samples, score_predictions, tune_knobs
from napari_instseg.core.jobs import run
from napari_instseg.core.pipeline import load_model
from napari_instseg.core.predict import PredictConfig

ROOT = Path(__file__).resolve().parents[1]
GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    p.add_argument("--models", nargs="*", default=["spoco-nuclei", "spoco-nuclei-full"])
    p.add_argument("--backends", nargs="*", default=["meanshift", "hdbscan"])
    args = p.parse_args()
    header = f"{'model':18} {'back-end':10} {'merge':>5} {'val AP50':>8} " + " ".join(
        f"AP@{t:.1f}" for t in THRESHOLDS
    )
    print(header)
    print("-" * len(header))
    for name in args.models:
        model = load_model(name)
        norm = model.card.normalisation
        folder = Path(args.data_root) / model.card.training.get("data", "dsb2018_fluo")

        def normalise(x, n=norm):
            return normalise_percentile(x, low=n["low"], high=n["high"])

        t0 = time.perf_counter()
        split = {s: load_folder(folder, split=s, normalise=normalise) for s in ("val", "test")}
        preds = {
            s: run(predict_samples(model, v, config=PredictConfig(tile_size=512)))
            for s, v in split.items()
        }
        truth_objects = sum(int(s.labels.max()) for s in split["test"])
        for backend in args.backends:
            if backend == model.card.backend:
                base = dict(model.card.backend_config)
            else:  # the knobs the card scored this back-end with
                by_backend = model.card.metrics.get("test_by_backend", {}).get(backend, {})
                base = dict(by_backend.get("knobs", {}))
            grid = {**{k: [v] for k, v in base.items()}, "merge_distance": list(GRID)}
            best, _, trials = tune_knobs(model, split["val"], preds["val"], grid, backend=backend)
            val_of = {t[0]["merge_distance"]: t[1] for t in trials}
            for merge in dict.fromkeys((0.0, best["merge_distance"])):
                knobs = {**base, "merge_distance": merge}
                _, s = score_predictions(
                    model, split["test"], preds["test"], backend=backend, knobs=knobs
                )
                aps = " ".join(f"{s[f'ap@{t:.2f}']:6.3f}" for t in THRESHOLDS)
                print(
                    f"{name:18} {backend:10} {merge:5.1f} {val_of[merge]:8.3f} {aps}",
                    flush=True,
                )
        print(f"{name}: {time.perf_counter() - t0:.0f} s, {truth_objects} test objects")


if __name__ == "__main__":
    main()
