"""Tests for napari_instseg.core.data.sparse: simulated sparse object annotation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_instseg.core.data import sparsify_instances


def grid_labels(n_rows=4, n_cols=5, size=6, gap=4):
    """n_rows x n_cols separated squares with ids 1..N (ids scrambled by 10x)."""
    step = size + gap
    labels = np.zeros((n_rows * step + gap, n_cols * step + gap), np.uint32)
    k = 1
    for r in range(n_rows):
        for c in range(n_cols):
            y, x = gap + r * step, gap + c * step
            labels[y : y + size, x : x + size] = 10 * k
            k += 1
    return labels


@pytest.mark.parametrize(("fraction", "expected"), [(0.1, 2), (0.3, 6), (0.55, 11), (1.0, 20)])
def test_keeps_the_requested_number_of_instances(fraction, expected):
    labels = grid_labels()  # 20 objects
    sparse, known = sparsify_instances(labels, fraction, rng=np.random.default_rng(0))
    kept = set(np.unique(sparse)) - {0}
    assert len(kept) == expected
    assert kept <= set(np.unique(labels)) - {0}
    # every kept object is whole, with its own id
    for i in kept:
        np.testing.assert_array_equal(sparse == i, labels == i)
    assert sparse.dtype == np.uint32


@pytest.mark.parametrize("background", ["none", "all", "near"])
def test_known_is_kept_objects_plus_chosen_background(background):
    labels = grid_labels()
    sparse, known = sparsify_instances(
        labels, 0.25, rng=np.random.default_rng(1), background=background, background_radius=2
    )
    kept = sparse > 0
    # known objects = kept objects exactly: no pixel of an unkept object is known
    np.testing.assert_array_equal(known & (labels > 0), kept)
    bg_known = known & (labels == 0)
    if background == "none":
        assert not bg_known.any()
    elif background == "all":
        np.testing.assert_array_equal(bg_known, labels == 0)
    else:
        near = ndi.binary_dilation(kept, iterations=2) & (labels == 0)
        np.testing.assert_array_equal(bg_known, near)
        assert bg_known.any() and not bg_known.all()


def test_at_least_one_instance_is_kept():
    labels = grid_labels(2, 2)
    sparse, known = sparsify_instances(labels, 0.01, rng=np.random.default_rng(0))
    assert len(np.unique(sparse)) == 2
    assert known.sum() == 36


def test_choice_depends_on_rng_and_is_reproducible():
    labels = grid_labels()
    a = sparsify_instances(labels, 0.5, rng=np.random.default_rng(7))[0]
    b = sparsify_instances(labels, 0.5, rng=np.random.default_rng(7))[0]
    np.testing.assert_array_equal(a, b)
    others = [sparsify_instances(labels, 0.5, rng=np.random.default_rng(s))[0] for s in range(5)]
    assert any(not np.array_equal(a, o) for o in others)


def test_no_objects():
    labels = np.zeros((8, 8), np.uint32)
    sparse, known = sparsify_instances(labels, 0.5, rng=np.random.default_rng(0), background="all")
    assert not sparse.any()
    assert known.all()
    _, known = sparsify_instances(labels, 0.5, rng=np.random.default_rng(0), background="near")
    assert not known.any()


@pytest.mark.parametrize("fraction", [0, -0.1, 1.5])
def test_bad_fraction_is_refused(fraction):
    with pytest.raises(ValueError, match="fraction"):
        sparsify_instances(grid_labels(), fraction, rng=np.random.default_rng(0))


def test_bad_background_is_refused():
    with pytest.raises(ValueError, match="background"):
        sparsify_instances(grid_labels(), 0.5, rng=np.random.default_rng(0), background="some")


def test_3d_labels():
    labels = np.zeros((4, 10, 10), np.uint32)
    labels[:, 1:4, 1:4] = 1
    labels[:, 6:9, 6:9] = 2
    sparse, known = sparsify_instances(labels, 0.5, rng=np.random.default_rng(0))
    assert sparse.shape == labels.shape
    assert len(np.unique(sparse)) == 2
    np.testing.assert_array_equal(known, sparse > 0)
