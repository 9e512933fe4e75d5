"""Losses restricted to the pixels whose label is known (sparse annotation)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def known_instances(labels, known) -> dict:
    """Targets of the instance methods: object ids where known (0 elsewhere) and the
    known-pixel mask."""
    known = np.asarray(known, bool)
    return {"instances": np.where(known, labels, 0).astype(np.int64), "known": known}


def masked_mean(values: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``known`` pixels; 0 (with a gradient path) when none is known."""
    known = known.to(values.dtype)
    return (values * known).sum() / known.sum().clamp_min(1.0)


def masked_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    known: torch.Tensor,
    *,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy averaged over known pixels, optionally weighted per class.

    Parameters
    ----------
    logits : tensor (B, K, *spatial)
    target : tensor (B, *spatial) of class indices
    known : tensor (B, *spatial) of bool
    class_weights : tensor (K,), optional
    """
    per_pixel = F.cross_entropy(logits, target.long(), reduction="none")
    if class_weights is not None:
        weights = class_weights.to(logits.device)[target.long()] * known.to(logits.dtype)
        return (per_pixel * weights).sum() / weights.sum().clamp_min(1e-6)
    return masked_mean(per_pixel, known)
