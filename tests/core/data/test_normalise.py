"""Tests for napari_instseg.core.data.normalise."""

from __future__ import annotations

import numpy as np

from napari_instseg.core.data import normalise_percentile


def test_min_max_map_to_0_1():
    x = np.arange(101, dtype=np.float32)[None]
    y = normalise_percentile(x, low=0, high=100)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y[0], np.arange(101) / 100, atol=1e-6)


def test_percentiles_map_to_0_1_without_clipping():
    x = np.arange(1001, dtype=np.float64).reshape(1, 7, 143)
    y = normalise_percentile(x, low=10, high=90)
    lo, hi = np.percentile(x, [10, 90])
    np.testing.assert_allclose(y, (x - lo) / (hi - lo), rtol=1e-5, atol=1e-5)
    assert y.min() < 0 and y.max() > 1  # no clipping
    assert y.shape == x.shape


def test_each_channel_is_normalised_on_its_own():
    rng = np.random.default_rng(0)
    a = rng.random((16, 16)) * 1000 + 5000
    b = rng.random((16, 16)) * 0.01
    y = normalise_percentile(np.stack([a, b]), low=0, high=100)
    for c in range(2):
        assert np.isclose(y[c].min(), 0, atol=1e-5)
        assert np.isclose(y[c].max(), 1, atol=1e-5)


def test_3d_channel_first():
    x = np.random.default_rng(1).random((1, 4, 8, 8)) * 50
    y = normalise_percentile(x, low=0, high=100)
    assert y.shape == x.shape
    assert np.isclose(y.min(), 0, atol=1e-6) and np.isclose(y.max(), 1, atol=1e-6)


def test_constant_image_gives_finite_values():
    y = normalise_percentile(np.full((1, 8, 8), 3.0))
    assert np.all(np.isfinite(y))
    np.testing.assert_array_equal(y, 0)
