"""Tests for the threeclass method: targets, loss and decoding with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_instseg.core.methods import get_method, list_methods
from napari_instseg.core.methods.threeclass import (
    BACKGROUND,
    BOUNDARY,
    INTERIOR,
    ThreeClassConfig,
    decode,
    make_loss,
    make_targets,
)


def _square():
    labels = np.zeros((9, 9), np.uint32)
    labels[2:7, 2:7] = 4
    return labels


def test_registry():
    assert "threeclass" in list_methods()
    m = get_method("threeclass")
    assert m.default_backend in m.backends
    with pytest.raises(ValueError, match="threeclass"):
        get_method("nope")


def test_targets_of_a_square():
    t = make_targets(_square(), np.ones((9, 9), bool), ThreeClassConfig())
    classes = t["classes"]
    expected = np.full((9, 9), BACKGROUND)
    expected[2:7, 2:7] = BOUNDARY
    expected[3:6, 3:6] = INTERIOR
    np.testing.assert_array_equal(classes, expected)
    assert t["known"].all() and t["known"].dtype == bool


def test_boundary_width_two():
    t = make_targets(_square(), np.ones((9, 9), bool), ThreeClassConfig(boundary_width=2))
    expected = np.full((9, 9), BACKGROUND)
    expected[2:7, 2:7] = BOUNDARY
    expected[4, 4] = INTERIOR
    np.testing.assert_array_equal(t["classes"], expected)


def test_touching_objects_each_get_a_boundary():
    labels = np.zeros((5, 8), np.uint32)
    labels[:, :4] = 1
    labels[:, 4:] = 2
    classes = make_targets(labels, np.ones(labels.shape, bool), ThreeClassConfig())["classes"]
    assert np.all(classes[:, 3] == BOUNDARY) and np.all(classes[:, 4] == BOUNDARY)


def test_decode_gives_probabilities():
    raw = {"classes": np.random.default_rng(0).normal(size=(3, 6, 7)).astype(np.float32) * 20}
    out = decode(raw, ThreeClassConfig())
    assert set(out) == {"foreground", "interior", "boundary"}
    for v in out.values():
        assert v.shape == (6, 7) and np.all(v >= 0) and np.all(v <= 1 + 1e-6)
    np.testing.assert_allclose(out["foreground"], out["interior"] + out["boundary"], atol=1e-6)
    # softmax known answer
    logits = raw["classes"].astype(np.float64)
    p = np.exp(logits - logits.max(0)) / np.exp(logits - logits.max(0)).sum(0)
    np.testing.assert_allclose(out["interior"], p[INTERIOR], atol=1e-5)


def test_loss_of_a_perfect_prediction_is_small_and_of_a_wrong_one_large():
    t = make_targets(_square(), np.ones((9, 9), bool), ThreeClassConfig())
    classes = torch.from_numpy(t["classes"])[None]
    good = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float() * 20
    bad = torch.roll(good, 1, dims=1)
    targets = {"classes": classes, "known": torch.from_numpy(t["known"])[None]}
    loss = make_loss(ThreeClassConfig())
    assert loss({"classes": good}, targets).item() < 1e-6
    assert loss({"classes": bad}, targets).item() > 10
