"""Tests for the seeded-watershed and connected-components back-ends with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.assembly import get_backend, list_backends
from napari_instseg.core.assembly.watershed import (
    ComponentsConfig,
    WatershedConfig,
    segment_components,
    segment_watershed,
)


def _two_touching_blobs():
    """Foreground of two overlapping disks; interior high only near the two centres."""
    yy, xx = np.mgrid[:30, :50]
    d1 = np.hypot(yy - 15, xx - 15)
    d2 = np.hypot(yy - 15, xx - 33)
    fg = ((d1 < 10) | (d2 < 10)).astype(np.float32)
    interior = np.clip(1 - np.minimum(d1, d2) / 8, 0, 1).astype(np.float32)
    return {"foreground": fg, "interior": interior}


def test_watershed_splits_touching_objects_along_the_valley():
    arrays = _two_touching_blobs()
    labels = segment_watershed(arrays, WatershedConfig(min_size=1, seed_threshold=0.6))
    assert labels.max() == 2
    np.testing.assert_array_equal(labels > 0, arrays["foreground"] > 0.5)
    assert labels[15, 15] != labels[15, 33]
    # the cut lies between the centres, at the valley of the interior map
    row = labels[15]
    cut = np.flatnonzero(row[:-1] != row[1:])
    inner_cut = [c for c in cut if 15 < c < 33]
    assert len(inner_cut) == 1 and 22 <= inner_cut[0] <= 26


def test_components_merge_touching_objects_without_interior_gap():
    arrays = _two_touching_blobs()
    arrays["interior"] = arrays["foreground"]
    labels = segment_components(arrays, ComponentsConfig(min_size=1))
    assert labels.max() == 1


def test_watershed_orphan_foreground_becomes_an_object():
    fg = np.zeros((20, 20), np.float32)
    fg[2:8, 2:8] = 1
    fg[12:18, 12:18] = 1
    interior = np.zeros_like(fg)
    interior[3:7, 3:7] = 1  # only the first region has a seed
    labels = segment_watershed(
        {"foreground": fg, "interior": interior}, WatershedConfig(min_size=1)
    )
    assert labels.max() == 2
    assert set(np.unique(labels[2:8, 2:8])) == {1}
    assert set(np.unique(labels[12:18, 12:18])) == {2}


def test_watershed_small_seeds_and_objects_are_dropped():
    fg = np.zeros((20, 30), np.float32)
    fg[2:12, 2:12] = 1  # 100 px
    fg[15:18, 20:23] = 1  # 9 px
    interior = fg.copy()
    labels = segment_watershed(
        {"foreground": fg, "interior": interior}, WatershedConfig(min_size=10)
    )
    assert labels.max() == 1 and labels[5, 5] == 1 and labels[16, 21] == 0
    labels = segment_watershed(
        {"foreground": fg, "interior": interior}, WatershedConfig(min_size=5)
    )
    assert labels.max() == 2


def test_components_grow_stops_at_foreground():
    interior = np.zeros((20, 20), np.float32)
    interior[8:12, 8:12] = 1
    fg = np.zeros_like(interior)
    fg[7:13, 7:13] = 1
    grown = segment_components(
        {"interior": interior, "foreground": fg}, ComponentsConfig(grow=3, min_size=1)
    )
    np.testing.assert_array_equal(grown, fg.astype(np.uint32))
    free = segment_components({"interior": interior}, ComponentsConfig(grow=2, min_size=1))
    assert free.sum() > 36 and free[6, 10] == 1 and free[5, 10] == 0
    none = segment_components({"interior": interior}, ComponentsConfig(grow=0, min_size=1))
    np.testing.assert_array_equal(none, interior.astype(np.uint32))


def test_registry_lists_and_calls():
    assert set(list_backends()) >= {"watershed", "components"}
    be = get_backend("watershed")
    assert be.config_type is WatershedConfig
    assert be.knob_names() == ("fg_threshold", "seed_threshold", "min_seed_size", "min_size")
    assert get_backend("components").default_config() == ComponentsConfig()
    with pytest.raises(ValueError, match="components"):
        get_backend("nope")
    with pytest.raises(ValueError, match="needs arrays"):
        be({"interior": np.zeros((4, 4))})


def test_backend_call_passes_the_knobs():
    arrays = _two_touching_blobs()
    be = get_backend("watershed")
    assert be(arrays).max() == 2
    # a seed threshold no pixel reaches: everything becomes one orphan region
    assert be(arrays, config=WatershedConfig(seed_threshold=1.0)).max() == 1
