"""Modality routing of the All-Cell Segmenter, image by image, with what each route scores.

For each test image of each dataset: the modality told from the image, the two qualities the
automatic route compares (mean foreground confidence of the detection head and of the flows
branch), the route ``auto`` takes with the card's other knobs, and AP@0.5 of the labels of
each route (``detection``, ``flows``) and of ``auto``. The last rows per dataset are means.

    python benchmarks/routing.py [--model allcell] [--split test] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_instseg.core.data import load_folder, normalise_percentile
from napari_instseg.core.evaluation import predict_samples
from napari_instseg.core.jobs import run
from napari_instseg.core.metrics import average_precision_dsb
from napari_instseg.core.pipeline import load_model
from napari_instseg.core.predict import PredictConfig
from napari_instseg.core.tuning import Tuner

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="allcell")
    p.add_argument("--split", default="test")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    args = p.parse_args()

    model = load_model(args.model)
    card = model.card
    norm = card.normalisation
    knobs = dict(card.backend_config)
    print(f"model {card.name}, split {args.split}, card knobs {knobs}")
    header = (
        f"{'data':15} {'image':18} {'modality':15} {'q_det':>6} {'q_flow':>6} {'auto':>9} "
        f"{'AP det':>7} {'AP flows':>8} {'AP auto':>8}"
    )
    print(header)
    print("-" * len(header))
    for data in card.training.get("data", "").split("+"):
        samples = load_folder(
            Path(args.data_root) / data,
            split=args.split,
            normalise=lambda x: normalise_percentile(x, low=norm["low"], high=norm["high"]),
        )
        preds = run(predict_samples(model, samples, config=PredictConfig(tile_size=512)))
        rows = []
        for s, prediction in zip(samples, preds, strict=True):
            tuner = Tuner(model, prediction)
            aps = {}
            for route in ("detection", "flows", "auto"):
                result = tuner.assemble(card.backend, {**knobs, "route": route})
                aps[route] = average_precision_dsb(s.labels, result.labels, iou_threshold=0.5)
                if route == "auto":
                    report = result.report
            rows.append(aps)
            print(
                f"{data:15} {s.name[:18]:18} {report['modality']:15} "
                f"{report['quality_detection']:6.3f} {report['quality_flows']:6.3f} "
                f"{report['route']:>9} {aps['detection']:7.3f} {aps['flows']:8.3f} "
                f"{aps['auto']:8.3f}"
            )
        means = {k: np.mean([r[k] for r in rows]) for k in rows[0]}
        print(
            f"{data:15} {'mean':18} {'':15} {'':6} {'':6} {'':>9} {means['detection']:7.3f} "
            f"{means['flows']:8.3f} {means['auto']:8.3f}"
        )


if __name__ == "__main__":
    main()
