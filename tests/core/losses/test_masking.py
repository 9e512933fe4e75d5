"""Tests for napari_instseg.core.losses.masking: unknown pixels never reach the loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_instseg.core.losses import masked_cross_entropy, masked_mean


def _problem(seed=0, shape=(2, 3, 8, 10)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g)
    target = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    known = torch.rand((shape[0], *shape[2:]), generator=g) > 0.5
    return logits, target, known


def test_masked_mean_known_answer():
    values = torch.tensor([1.0, 2.0, 3.0, 10.0])
    known = torch.tensor([True, True, True, False])
    assert masked_mean(values, known).item() == pytest.approx(2.0)


def test_masked_mean_nothing_known_is_zero_with_a_gradient():
    values = torch.tensor([1.0, 2.0], requires_grad=True)
    out = masked_mean(values, torch.tensor([False, False]))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(values.grad, torch.zeros(2))


def test_all_known_equals_plain_cross_entropy():
    logits, target, _ = _problem()
    known = torch.ones_like(target, dtype=torch.bool)
    expected = F.cross_entropy(logits, target)
    torch.testing.assert_close(masked_cross_entropy(logits, target, known), expected)


def test_known_answer_on_known_pixels_only():
    logits, target, known = _problem(1)
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    expected = per_pixel[known].mean()
    torch.testing.assert_close(masked_cross_entropy(logits, target, known), expected)


def test_class_weights_known_answer():
    logits, target, known = _problem(2)
    w = torch.tensor([1.0, 2.0, 5.0])
    per_pixel = F.cross_entropy(logits, target, reduction="none")
    pw = w[target][known]
    expected = (per_pixel[known] * pw).sum() / pw.sum()
    got = masked_cross_entropy(logits, target, known, class_weights=w)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("weights", [None, torch.tensor([1.0, 1.0, 3.0])])
def test_unknown_pixels_do_not_change_the_loss(weights):
    logits, target, known = _problem(3)
    base = masked_cross_entropy(logits, target, known, class_weights=weights)
    g = torch.Generator().manual_seed(99)
    unknown = ~known
    logits2 = logits.clone()
    noise = torch.randn(logits.shape, generator=g) * 100
    logits2 = torch.where(unknown[:, None], noise, logits2)
    target2 = torch.where(unknown, torch.randint(0, 3, target.shape, generator=g), target)
    changed = masked_cross_entropy(logits2, target2, known, class_weights=weights)
    torch.testing.assert_close(base, changed)
    # and the loss does depend on the known pixels
    target3 = torch.where(known, (target + 1) % 3, target)
    assert not torch.isclose(
        base, masked_cross_entropy(logits, target3, known, class_weights=weights)
    )


@pytest.mark.parametrize("weights", [None, torch.tensor([1.0, 1.0, 3.0])])
def test_gradient_is_zero_at_unknown_pixels(weights):
    logits, target, known = _problem(4)
    logits.requires_grad_(True)
    masked_cross_entropy(logits, target, known, class_weights=weights).backward()
    grad = logits.grad
    assert torch.all(grad.permute(1, 0, 2, 3)[:, ~known] == 0)
    assert torch.all(grad.permute(1, 0, 2, 3)[:, known].abs().sum(0) > 0)


def test_3d_and_nothing_known():
    logits, target, _ = _problem(5, shape=(1, 3, 4, 5, 6))
    known = torch.zeros_like(target, dtype=torch.bool)
    logits.requires_grad_(True)
    loss = masked_cross_entropy(logits, target, known)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(logits.grad == 0)
    loss_w = masked_cross_entropy(logits, target, known, class_weights=torch.ones(3))
    assert loss_w.item() == 0.0
