"""Targets and loss of Omnipose-style flows, shared by every method with a flows branch.

Cutler et al., "Omnipose", Nature Methods 19, 2022. Targets: the eikonal distance to the
object's boundary (background at ``distance_background``), its unit gradient times
``flow_scale`` and a boundary map (:func:`~napari_instseg.core.flow_fields.labels_to_fields`).
Loss over known pixels: weighted squared error of the flow and of the distance, both divided
by ``flow_scale``^2 and weighted 1 inside objects and 1/2 outside, plus the boundary's binary
cross-entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..flow_fields import labels_to_fields
from .masking import masked_mean


@dataclass(frozen=True)
class FlowTerms:
    """Target scaling and loss weights (Omnipose's)."""

    flow_scale: float = 5.0
    distance_background: float = -5.0
    w_flow: float = 10.0
    w_distance: float = 2.0
    w_boundary: float = 2.0


def flow_targets(labels: np.ndarray, known: np.ndarray, terms: FlowTerms) -> dict:
    """Scaled flows, distance (background negative), boundary, object mask, known mask.

    The fields are computed from ``labels`` as given; ``known`` only says where they are
    supervised. An object that fills the whole crop has no boundary, hence no distance or
    flow: its pixels are treated as unknown.
    """
    labels = np.asarray(labels)
    fields = labels_to_fields(labels)
    inside = labels > 0
    distance = np.where(inside, fields.distance, np.float32(terms.distance_background))
    return {
        "flow": (terms.flow_scale * fields.flow).astype(np.float32),
        "distance": distance.astype(np.float32),
        "boundary": fields.boundary.astype(np.float32),
        "inside": inside,
        "known": np.asarray(known, bool) & ~fields.unresolved,
    }


def flow_loss(outputs: dict, targets: dict, terms: FlowTerms) -> torch.Tensor:
    """The weighted sum of the flow, distance and boundary terms (batched tensors)."""
    flow, distance, boundary = outputs["flow"], outputs["distance"], outputs["boundary"]
    known = targets["known"]
    scale2 = terms.flow_scale**2
    weight = (1.0 + targets["inside"].to(flow.dtype)) / 2.0
    flow_err = ((flow - targets["flow"]) ** 2).mean(dim=1) / scale2
    dist_err = (distance[:, 0] - targets["distance"]) ** 2 / scale2
    bce = F.binary_cross_entropy_with_logits(boundary[:, 0], targets["boundary"], reduction="none")
    return (
        terms.w_flow * masked_mean(weight * flow_err, known)
        + terms.w_distance * masked_mean(weight * dist_err, known)
        + terms.w_boundary * masked_mean(bce, known)
    )
