"""Modality detection from image statistics, checked on every image of the shared data."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_instseg.core.modality import (
    BRIGHTFIELD,
    FLUORESCENCE,
    PHASE,
    detect_modality,
)

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _images(name):
    root = DATA / name
    if not (root / "metadata.csv").is_file():
        pytest.skip(f"shared data not found at {root}")
    with open(root / "metadata.csv", newline="") as f:
        for row in csv.DictReader(f):
            yield row["name"], tifffile.imread(root / "images" / f"{row['name']}.tif")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "expected"), [("dsb2018_fluo", FLUORESCENCE), ("usiigaci_phase", PHASE)]
)
def test_every_image_of_both_datasets_is_told_apart(name, expected):
    wrong = [n for n, image in _images(name) if detect_modality(image).modality != expected]
    assert not wrong, f"{len(wrong)} {name} images not called {expected}: {wrong[:5]}"


def test_single_channel_rule_on_synthetic_images():
    rng = np.random.default_rng(0)
    fluo = rng.normal(100, 3, (64, 64))
    fluo[10:20, 10:20] += 400  # bright nuclei on a dark background
    fluo[40:50, 30:45] += 300
    guess = detect_modality(fluo)
    assert guess.modality == FLUORESCENCE and guess.stats["dark_fraction"] > 0.5
    phase = rng.normal(0.5, 0.05, (64, 64))
    phase[10:20, 10:20] -= 0.3  # dark cell bodies with bright halos on grey
    phase[9, 9:21] += 0.3
    assert detect_modality(phase).modality == PHASE
    # NaN pixels and a channel axis of length 1 change nothing
    with_nan = fluo.copy()
    with_nan[0, :5] = np.nan
    assert detect_modality(with_nan).modality == FLUORESCENCE
    assert detect_modality(fluo[None], channel_axis=0).modality == FLUORESCENCE


def test_colour_rule():
    rng = np.random.default_rng(1)
    green = np.zeros((32, 32, 3), np.uint8)
    green[..., 1] = rng.integers(0, 255, (32, 32))
    assert detect_modality(green).modality == FLUORESCENCE
    stained = np.stack(
        [
            rng.integers(150, 255, (32, 32)),
            rng.integers(0, 120, (32, 32)),
            rng.integers(100, 200, (32, 32)),
        ],
        axis=-1,
    ).astype(np.uint8)
    assert detect_modality(stained).modality == BRIGHTFIELD
    gray = np.repeat(rng.normal(128, 10, (32, 32, 1)), 3, axis=-1)
    guess = detect_modality(gray)
    assert guess.modality == PHASE and guess.reason.startswith("gray RGB")
    assert detect_modality(np.moveaxis(stained, -1, 0), channel_axis=0).modality == BRIGHTFIELD


def test_empty_image_is_refused():
    with pytest.raises(ValueError, match="empty"):
        detect_modality(np.zeros((0, 5)))
