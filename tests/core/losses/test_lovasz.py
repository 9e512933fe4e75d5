"""Lovász hinge against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from napari_instseg.core.losses import lovasz_hinge_flat


def test_confident_correct_prediction_costs_nothing():
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    assert float(lovasz_hinge_flat(torch.tensor([3.0, 2.0, -2.0, -4.0]), labels)) == 0.0


def test_zero_logits_cost_one():
    # Every hinge error is 1; the increments of the Jaccard loss add up to the Jaccard loss of
    # predicting everything wrong, which is 1.
    labels = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
    assert float(lovasz_hinge_flat(torch.zeros(5), labels)) == pytest.approx(1.0)


def test_binary_logits_give_twice_the_jaccard_loss():
    # Pixel 1 is a false negative, pixel 2 a false positive: the prediction {0, 2} against the
    # truth {0, 1} has IoU 1/3, Jaccard loss 2/3; hinge errors are 2 on the wrong pixels.
    labels = torch.tensor([1.0, 1.0, 0.0, 0.0])
    logits = torch.tensor([1.0, -1.0, 1.0, -1.0])
    assert float(lovasz_hinge_flat(logits, labels)) == pytest.approx(4.0 / 3.0)


def test_gradient_points_towards_the_truth_and_empty_input():
    labels = torch.tensor([1.0, 0.0, 1.0])
    logits = torch.zeros(3, requires_grad=True)
    lovasz_hinge_flat(logits, labels).backward()
    assert logits.grad[0] < 0 and logits.grad[2] < 0 and logits.grad[1] > 0
    assert float(lovasz_hinge_flat(torch.zeros(0), torch.zeros(0))) == 0.0
