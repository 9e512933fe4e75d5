"""Fault injection through the command line, run in-process: each case asserts the message
(one line), the exit code and that nothing was lost (earlier outputs intact, no half-written
or hidden staged files left)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_instseg.core.samples import sample_data_dir


@pytest.fixture
def models_env(tmp_path_factory, monkeypatch, save_tiny_threeclass) -> Path:
    """A model folder with the tiny three-class model, on the model search path."""
    directory = tmp_path_factory.mktemp("models")
    save_tiny_threeclass(directory, modality="fluorescence", object_size=20.0)
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", str(directory))
    return directory


@pytest.fixture(scope="session")
def nuclei_crop() -> np.ndarray:
    """64 x 64 of the bundled 2D nuclei sample."""
    image = tifffile.imread(sample_data_dir() / "images" / "nuclei2d_dsb_stardist.tif")
    return np.ascontiguousarray(image[:64, :64])


@pytest.fixture
def image(tmp_path, nuclei_crop) -> Path:
    path = tmp_path / "inputs" / "cells.tif"
    path.parent.mkdir()
    tifffile.imwrite(path, nuclei_crop)
    return path
