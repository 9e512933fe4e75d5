"""Appearance: the shipped nuclei models on stained and brightfield nuclei they never saw.

Every image of the ``dsb2018_stained`` test split (RGB stained tissue, grey brightfield) is
segmented through the real path (:func:`napari_instseg.core.pipeline.segment_image`) with
the appearance step off (``as-is``: colour averaged to grey by luma, as a user would try it)
and on (``auto``: haematoxylin unmixing for colour, inversion for dark-on-bright grey), both
at the native scale, and with ``auto`` appearance and ``auto`` diameter together (what
``segment`` does by default). AP@0.5 and the DSB score (mean AP over IoU 0.5:0.95), mean over
images, per kind of image; the modes ``auto`` chose are counted.

    python benchmarks/appearance.py [--models NAME ...] [--split test] [--kinds ...]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
from scale import NUCLEI_MODELS  # benchmarks/ is on the path when run as a script

from napari_instseg.core.data.datasets import read_column, read_image
from napari_instseg.core.jobs import run
from napari_instseg.core.metrics import DSB_THRESHOLDS, average_precision_dsb
from napari_instseg.core.pipeline import load_model, segment_image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "dsb2018_stained"
MODELS = (*NUCLEI_MODELS, "allcell")
SETTINGS = (("as-is", "off"), ("auto", "off"), ("auto", "auto"))


def scores(truth, labels) -> tuple[float, float]:
    aps = [average_precision_dsb(truth, labels, iou_threshold=t) for t in DSB_THRESHOLDS]
    return float(aps[0]), float(np.mean(aps))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--split", default="test")
    p.add_argument("--kinds", nargs="*", default=["stained_colour", "brightfield_grey"])
    args = p.parse_args()
    from napari_instseg.core.zoo import list_models

    shipped = {c.name for c, _ in list_models()}
    models = [m for m in (args.models or MODELS) if m in shipped]
    splits, kinds = read_column(DATA, "split"), read_column(DATA, "kind")
    by_kind = {
        k: sorted(n for n in splits if splits[n] == args.split and kinds[n] == k)
        for k in args.kinds
    }
    pairs = {
        k: [
            (read_image(DATA / "images" / f"{n}.tif"), read_image(DATA / "masks" / f"{n}.tif"))
            for n in names
        ]
        for k, names in by_kind.items()
    }
    head = (
        f"{'model':20} {'kind':17} {'n':>3} "
        + " ".join(f"{a + '/' + d:>17}" for a, d in SETTINGS)
        + "  auto chose"
    )
    print(f"dsb2018_stained {args.split}: AP@0.5 | DSB score (mean AP@0.5:0.95), mean over images")
    print(head)
    print("-" * len(head))
    for name in models:
        model = load_model(name)
        for kind, items in pairs.items():
            cells, chosen = [], Counter()
            t0 = time.perf_counter()
            for appearance, diameter in SETTINGS:
                got = []
                for image, truth in items:
                    seg = run(segment_image(model, image, appearance=appearance, diameter=diameter))
                    got.append(scores(truth, seg.labels))
                    if appearance == "auto" and diameter == "off":
                        chosen[seg.prediction.info["appearance"]["mode"]] += 1
                ap, dsb = np.mean(got, axis=0)
                cells.append(f"{ap:8.3f} | {dsb:5.3f}")
            modes = " ".join(f"{k} {v}" for k, v in sorted(chosen.items()))
            print(
                f"{name:20} {kind:17} {len(items):3d} "
                + " ".join(f"{c:>17}" for c in cells)
                + f"  {modes} ({time.perf_counter() - t0:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
