"""Write each shipped card's ``object_size``: the median equivalent diameter of the objects of
its training masks (every object of the images named in ``training.train_images``, from the
folders in ``training.data``), as :func:`napari_instseg.core.scale.median_diameter` measures it.

    python recipes/object_size.py [NAME ...]     (from the repository root)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from napari_instseg.core.data.datasets import read_image
from napari_instseg.core.scale import median_diameter

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "src" / "napari_instseg" / "zoo"
DATA = ROOT.parent / "shared" / "data"


def training_masks(card: dict):
    names = set(card["training"].get("train_images", []))
    for folder in card["training"].get("data", "").split("+"):
        for path in sorted((DATA / folder / "masks").glob("*.tif")):
            if path.stem in names:
                yield read_image(path)


def main(names: list[str]) -> None:
    for path in sorted(ZOO.glob("*.json")):
        card = json.loads(path.read_text())
        if names and card["name"] not in names:
            continue
        size = median_diameter(list(training_masks(card)))
        if size is None:
            print(f"{card['name']}: no training masks found; left as it was")
            continue
        print(f"{card['name']}: object_size {card.get('object_size')} -> {size:.2f}")
        card["object_size"] = round(size, 2)
        path.write_text(json.dumps(card, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
