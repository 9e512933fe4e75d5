"""Lovász hinge: a convex surrogate of the Jaccard (IoU) loss for one binary mask.

Berman, Triki, Blaschko, "The Lovász-Softmax loss: A tractable surrogate for the optimization
of the intersection-over-union measure in neural networks", CVPR 2018. The hinge errors are
sorted; each one is weighted by how much the Jaccard loss of the ground truth grows when that
pixel is added to the errors (the gradient of the Lovász extension).
"""

from __future__ import annotations

import torch


def _jaccard_steps(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Increments of the Jaccard loss as errors are added in sorted order."""
    total = gt_sorted.sum()
    intersection = total - gt_sorted.cumsum(0)
    union = total + (1.0 - gt_sorted).cumsum(0)
    jaccard = 1.0 - intersection / union
    if jaccard.numel() > 1:
        jaccard = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
    return jaccard


def lovasz_hinge_flat(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovász hinge of flat ``logits`` (any real values) against binary ``labels``.

    Examples
    --------
    >>> y = torch.tensor([1.0, 0.0])
    >>> float(lovasz_hinge_flat(torch.tensor([5.0, -5.0]), y))
    0.0
    """
    if logits.numel() == 0:
        return logits.sum() * 0.0
    labels = labels.to(logits.dtype)
    signs = 2.0 * labels - 1.0
    errors = 1.0 - logits * signs
    errors_sorted, order = torch.sort(errors, descending=True)
    steps = _jaccard_steps(labels[order])
    return torch.dot(torch.relu(errors_sorted), steps)
