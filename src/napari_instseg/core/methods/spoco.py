"""SPOCO: pixel embeddings trained from sparse object-level labels.

Wolny, Yu, Pape, Kreshuk, "Sparse Object-level Supervision for Instance Segmentation with
Pixel Embeddings", CVPR 2022.

A network f maps every pixel to a 16-D embedding; pixels of one object gather within
``delta_var`` of their object's mean and object means stay ``2 delta_dist`` apart. Only a few
whole objects per image need to be annotated: the discriminative loss (pull, push, a Gaussian
soft-mask Dice) runs on them, every other pixel is pushed away from the annotated objects
("unlabelled push"), and on the unlabelled region f is asked to agree with g, a momentum
(moving-average) copy of f that sees a perturbed view of the same crop ("consistency").
Instances are found by clustering the embeddings (back-ends ``meanshift``, ``hdbscan`` and
``consistency``).

Departures from the reference code, on purpose:
- the unlabelled-push and consistency weights are applied (the reference silently ignores the
  consistency weight and defaults the unlabelled push to 0);
- g is updated only while training, never by evaluation or prediction;
- an extra ``foreground`` head, trained on the known pixels only (annotated objects versus
  painted background), restricts clustering to the foreground; the reference used the
  ground-truth foreground mask at evaluation;
- the backbone is the library's UNet.

Heads: ``embedding`` (E), ``foreground`` (1), and ``embedding_g`` (E): g's embedding of a
fixed perturbed view, used by consistency clustering. Decoded arrays: ``pixel_embedding``,
``pixel_embedding_g`` and ``foreground`` (probability).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..losses import (
    DiscriminativeWeights,
    consistency_term,
    discriminative_terms,
    known_instances,
    masked_mean,
)
from ..nets import MomentumPair, UNetConfig, build_unet
from .base import Method


@dataclass(frozen=True)
class SpocoConfig:
    """Network shape, margins and loss weights (SPOCO README defaults)."""

    ndim: int = 2
    in_channels: int = 1
    depth: int = 4
    width: int = 16
    embedding_dim: int = 16
    momentum: float = 0.999
    delta_var: float = 0.5
    delta_dist: float = 2.0
    kernel_threshold: float = 0.5
    w_pull: float = 1.0
    w_push: float = 1.0
    w_regulariser: float = 0.001
    w_instance: float = 1.0
    w_unlabelled_push: float = 1.0
    w_consistency: float = 1.0
    w_foreground: float = 1.0
    max_anchors: int = 20
    volume_threshold: float = 0.05
    #: Push apart only objects within this many pixels of each other (0: every pair in the
    #: crop, the reference). See ``DiscriminativeWeights.push_radius``.
    push_radius: int = 0


def heads(cfg: SpocoConfig) -> tuple[tuple[str, int], ...]:
    return (
        ("embedding", cfg.embedding_dim),
        ("foreground", 1),
        ("embedding_g", cfg.embedding_dim),
    )


def build_net(cfg: SpocoConfig) -> torch.nn.Module:
    f = build_unet(
        UNetConfig(
            cfg.ndim,
            cfg.in_channels,
            cfg.depth,
            cfg.width,
            (("embedding", cfg.embedding_dim), ("foreground", 1)),
        )
    )
    return MomentumPair(f, cfg.momentum, g_heads=("embedding",))


def make_targets(labels: np.ndarray, known: np.ndarray, cfg: SpocoConfig) -> dict:
    """Object ids where known (0 elsewhere) and the known-pixel mask."""
    return known_instances(labels, known)


def make_loss(cfg: SpocoConfig):
    weights = DiscriminativeWeights(
        delta_var=cfg.delta_var,
        delta_dist=cfg.delta_dist,
        pull=cfg.w_pull,
        push=cfg.w_push,
        regulariser=cfg.w_regulariser,
        instance=cfg.w_instance,
        unlabelled_push=cfg.w_unlabelled_push,
        kernel_threshold=cfg.kernel_threshold,
        push_radius=cfg.push_radius,
    )

    def loss(outputs: dict, targets: dict) -> torch.Tensor:
        emb, fg = outputs["embedding"], outputs["foreground"]
        instances, known = targets["instances"], targets["known"]
        bce = F.binary_cross_entropy_with_logits(
            fg[:, 0], (instances > 0).to(fg.dtype), reduction="none"
        )
        total = cfg.w_foreground * masked_mean(bce, known)
        for b in range(emb.shape[0]):
            total = total + discriminative_terms(emb[b], instances[b], weights) / emb.shape[0]
            if cfg.w_consistency and "embedding_g" in outputs:
                term = consistency_term(
                    emb[b],
                    outputs["embedding_g"][b],
                    ~known[b],
                    delta_var=cfg.delta_var,
                    kernel_threshold=cfg.kernel_threshold,
                    max_anchors=cfg.max_anchors,
                    volume_threshold=cfg.volume_threshold,
                )
                if term is not None:
                    total = total + cfg.w_consistency * term / emb.shape[0]
        return total

    return loss


def decode(raw, cfg: SpocoConfig) -> dict[str, np.ndarray]:
    fg = np.asarray(raw["foreground"], np.float32)[0]
    out = {
        "pixel_embedding": np.asarray(raw["embedding"], np.float32),
        "foreground": 1.0 / (1.0 + np.exp(-fg)),
    }
    if "embedding_g" in raw:
        out["pixel_embedding_g"] = np.asarray(raw["embedding_g"], np.float32)
    return out


METHOD = Method(
    name="spoco",
    config_type=SpocoConfig,
    heads=heads,
    build_net=build_net,
    make_targets=make_targets,
    make_loss=make_loss,
    decode=decode,
    default_backend="meanshift",
    backends=("meanshift", "hdbscan", "consistency"),
    description="SPOCO: pixel embeddings from sparse object labels, clustered by mean-shift",
    sparse_labels=True,
    head_kinds={"embedding": "scalar", "foreground": "scalar", "embedding_g": "scalar"},
)
