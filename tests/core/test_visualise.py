"""Direction colours of vector fields; principal-component colours of embeddings."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.visualise import embedding_to_rgb, vectors_to_rgb


def test_direction_sets_hue_and_length_sets_brightness():
    v = np.zeros((2, 1, 4), np.float32)
    v[:, 0, 0] = (0, 1)  # pointing along +x: hue 0, red
    v[:, 0, 1] = (0, -1)  # along -x: hue 0.5, cyan
    v[:, 0, 2] = (0, 0.5)  # half as long: half as bright
    rgb = vectors_to_rgb(v, saturation_percentile=100)
    np.testing.assert_allclose(rgb[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 1], [0, 1, 1], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 2], [0.5, 0, 0], atol=1e-6)
    np.testing.assert_allclose(rgb[0, 3], [0, 0, 0], atol=1e-6)  # no displacement: black


def test_wrong_shapes_are_refused():
    with pytest.raises(ValueError, match="vector field"):
        vectors_to_rgb(np.zeros((3, 4, 4)))


def test_embedding_colours_separate_clusters():
    emb = np.zeros((16, 10, 10), np.float32)
    emb[3, :, 5:] = 4.0  # right half far from left half in one direction
    emb += np.random.default_rng(0).normal(0, 0.01, emb.shape).astype(np.float32)
    rgb = embedding_to_rgb(emb)
    assert rgb.shape == (10, 10, 3) and rgb.dtype == np.float32
    assert 0 <= rgb.min() and rgb.max() <= 1
    assert np.abs(rgb[:, :5].mean((0, 1)) - rgb[:, 5:].mean((0, 1))).max() > 0.9
    assert embedding_to_rgb(np.ones((2, 3, 3), np.float32)).shape == (3, 3, 3)
    with pytest.raises(ValueError, match="embedding"):
        embedding_to_rgb(np.zeros(5))
