"""Every bundled sample opens in a (headless) napari viewer as image + ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.samples import list_samples, sample_info

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("name", list_samples())
def test_open_sample(make_napari_viewer, name):
    from napari.layers import Image, Labels

    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-instseg", name)

    assert len(layers) == 2
    images = [layer for layer in viewer.layers if isinstance(layer, Image)]
    labels = [layer for layer in viewer.layers if isinstance(layer, Labels)]
    assert len(images) == 1 and len(labels) == 1
    image, gt = images[0], labels[0]

    assert gt.data.dtype == np.uint32
    assert gt.data.shape == image.data.shape
    assert gt.name == f"{image.name} ground truth"
    assert int(gt.data.max()) == sample_info(name)["n_instances"]
    assert gt.metadata["source"] and gt.metadata["licence"]

    if "3d" in name:
        assert image.ndim == 3 and gt.ndim == 3
        assert "synthetic" in image.name.lower() and "synthetic" in gt.name.lower()
        assert image.metadata["synthetic"] is True
    else:
        assert image.ndim == 2
        assert "synthetic" not in image.name.lower()
        assert image.metadata["synthetic"] is False
