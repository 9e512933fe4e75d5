"""SPOCO's embedding losses on embeddings with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from napari_instseg.core.losses import (
    DiscriminativeWeights,
    consistency_term,
    discriminative_terms,
    kernel_scale,
    soft_dice,
)

W = DiscriminativeWeights()


def _ideal(n_dim=4):
    """Two annotated objects whose pixels sit exactly on far-apart points; the rest far away."""
    instances = torch.zeros(12, 12, dtype=torch.int64)
    instances[1:5, 1:5] = 1
    instances[7:11, 6:10] = 2
    emb = torch.zeros(n_dim, 12, 12)
    emb[0][instances == 0] = -10.0
    emb[1][instances == 1] = 10.0
    emb[2][instances == 2] = 10.0
    return emb, instances


def test_ideal_embedding_costs_only_the_regulariser():
    emb, instances = _ideal()
    loss = discriminative_terms(emb, instances, W)
    assert loss.item() == pytest.approx(W.regulariser * 10.0, rel=1e-4)


def test_unlabelled_push_is_applied():
    emb, instances = _ideal()
    emb[:, 0, 11] = emb[:, 2, 2]  # an unlabelled pixel sits on object 1's mean
    off = DiscriminativeWeights(unlabelled_push=0.0)
    with_push = discriminative_terms(emb, instances, W)
    without = discriminative_terms(emb, instances, off)
    n_outside = int((instances == 0).sum())
    # hinge (delta_dist - 0)^2 for one pixel, averaged over outside pixels and 2 objects
    expected = W.delta_dist**2 / n_outside / 2
    assert (with_push - without).item() == pytest.approx(expected, rel=1e-4)


def test_pull_and_push_penalise_what_they_should():
    emb, instances = _ideal()
    spread = emb.clone()
    spread[1][instances == 1] += torch.linspace(-2, 2, 16)  # object 1 spreads out
    assert discriminative_terms(spread, instances, W) > discriminative_terms(emb, instances, W)
    close = emb.clone()
    close[2][instances == 2] = 0.0
    close[1][instances == 2] = 9.0  # object 2's mean comes within 2 delta_dist of object 1's
    assert discriminative_terms(close, instances, W) > discriminative_terms(emb, instances, W)


def test_no_annotated_object_gives_zero_with_gradient():
    emb = torch.randn(4, 8, 8, requires_grad=True)
    loss = discriminative_terms(emb, torch.zeros(8, 8, dtype=torch.int64), W)
    assert loss.item() == 0.0
    loss.backward()


def test_kernel_is_half_at_delta_var():
    scale = kernel_scale(0.5, 0.5)
    assert math.exp(-(0.5**2) / scale) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        kernel_scale(0.5, 1.0)


def test_soft_dice():
    a = torch.tensor([1.0, 0.0, 1.0])
    assert soft_dice(a, a).item() == pytest.approx(0.0)
    assert soft_dice(a, 1 - a).item() == pytest.approx(1.0)


def test_consistency_zero_for_equal_views_and_positive_otherwise():
    torch.manual_seed(0)
    f = torch.randn(4, 16, 16)
    region = torch.ones(16, 16, dtype=torch.bool)
    assert consistency_term(f, f.clone(), region).item() == pytest.approx(0.0, abs=1e-6)
    g = f + torch.randn_like(f)
    f.requires_grad_()
    term = consistency_term(f, g, region)
    assert term.item() > 0.05
    term.backward()
    assert f.grad.abs().sum() > 0


def test_consistency_needs_enough_unlabelled_pixels():
    f = torch.randn(4, 20, 20)
    region = torch.zeros(20, 20, dtype=torch.bool)
    region[0, :10] = True  # 10 of 400 pixels < 5%
    assert consistency_term(f, f, region) is None


def test_push_radius_pushes_only_objects_that_come_close():
    from napari_instseg.core.losses.discriminative import neighbouring_objects

    instances = torch.zeros(12, 20, dtype=torch.int64)
    instances[2:6, 2:6], instances[2:6, 6:10], instances[2:6, 16:20] = 1, 2, 3
    near = neighbouring_objects(instances, torch.tensor([1, 2, 3]), 2)
    assert near.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    emb = torch.zeros(4, 12, 20)
    emb[0][instances == 0] = -10.0
    emb[1][instances == 1] = 10.0
    emb[2][instances == 2] = 10.0
    emb[1][instances == 3] = 10.5  # object 3 (far from 1 in the image) sits near 1's mean
    everywhere = discriminative_terms(emb, instances, W)
    local = discriminative_terms(emb, instances, DiscriminativeWeights(push_radius=2))
    no_push = discriminative_terms(emb, instances, DiscriminativeWeights(push=0.0))
    # the far pair violates the margin; only the pair that touches is checked with a radius
    assert everywhere > no_push
    assert local.item() == pytest.approx(no_push.item(), rel=1e-5)
    emb[2][instances == 2] = 0.0
    emb[1][instances == 2] = 9.0  # now the touching pair is too close
    local = discriminative_terms(emb, instances, DiscriminativeWeights(push_radius=2))
    # hinge (2 delta_dist - 1)^2 = 9 for the one pair within reach, both ways, over 2 pairs
    no_push = discriminative_terms(emb, instances, DiscriminativeWeights(push=0.0))
    assert (local - no_push).item() == pytest.approx(9.0, rel=1e-4)
