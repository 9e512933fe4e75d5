"""Baseline: a 3-class UNet (background / interior / boundary) with seeded watershed.

The classic semantic route to instances (e.g. Caicedo et al., Cytometry A 2019, "Evaluation of
deep learning strategies for nucleus segmentation in fluorescence images"): a network labels
every pixel as background, object interior or object boundary; instances are the connected
interiors, grown back to the object edge by a watershed. It exercises the whole pipeline and
is the reference row of every accuracy table.

Outputs: one head ``classes`` with 3 logits per pixel. Decoded arrays: ``foreground``
(P(interior) + P(boundary)), ``interior`` and ``boundary`` probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from skimage.segmentation import find_boundaries

from ..losses import masked_cross_entropy
from ..nets import UNetConfig, build_unet
from .base import Method

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2


@dataclass(frozen=True)
class ThreeClassConfig:
    """Network shape and target definition of the 3-class baseline."""

    ndim: int = 2
    in_channels: int = 1
    depth: int = 4
    width: int = 32
    boundary_width: int = 1
    boundary_weight: float = 2.0


def heads(cfg: ThreeClassConfig) -> tuple[tuple[str, int], ...]:
    return (("classes", 3),)


def build_net(cfg: ThreeClassConfig) -> torch.nn.Module:
    return build_unet(UNetConfig(cfg.ndim, cfg.in_channels, cfg.depth, cfg.width, heads=heads(cfg)))


def make_targets(labels: np.ndarray, known: np.ndarray, cfg: ThreeClassConfig) -> dict:
    """Class map (0 background, 1 interior, 2 boundary) and the known-pixel mask.

    Boundaries are the objects' own outer pixels (``inner`` mode), so an annotated object next
    to an unannotated one still gets its full edge, and unknown pixels stay unknown.
    """
    boundary = find_boundaries(labels, connectivity=1, mode="inner")
    for _ in range(cfg.boundary_width - 1):
        boundary |= find_boundaries(np.where(boundary, 0, labels), connectivity=1, mode="inner")
    classes = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.int64)
    classes[boundary & (labels > 0)] = BOUNDARY
    return {"classes": classes, "known": np.asarray(known, bool)}


def make_loss(cfg: ThreeClassConfig):
    weights = torch.tensor([1.0, 1.0, cfg.boundary_weight])

    def loss(outputs: dict, targets: dict) -> torch.Tensor:
        return masked_cross_entropy(
            outputs["classes"], targets["classes"], targets["known"], class_weights=weights
        )

    return loss


def decode(raw, cfg: ThreeClassConfig) -> dict[str, np.ndarray]:
    logits = np.asarray(raw["classes"], dtype=np.float32)
    logits = logits - logits.max(axis=0, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=0, keepdims=True)
    return {
        "foreground": p[INTERIOR] + p[BOUNDARY],
        "interior": p[INTERIOR],
        "boundary": p[BOUNDARY],
    }


METHOD = Method(
    name="threeclass",
    config_type=ThreeClassConfig,
    heads=heads,
    build_net=build_net,
    make_targets=make_targets,
    make_loss=make_loss,
    decode=decode,
    default_backend="watershed",
    backends=("watershed", "components"),
    description="baseline: 3-class UNet (background/interior/boundary) + seeded watershed",
    head_kinds={"classes": "scalar"},
)
