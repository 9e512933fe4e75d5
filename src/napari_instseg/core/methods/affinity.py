"""Pixel-embedded affinity: affinities from embedding similarity, cut by the mutex watershed.

Huang, Deng, Chen, Fu, Xiong, "Learning to Model Pixel-Embedded Affinity for Homogeneous
Instance Segmentation", AAAI 2022.

A network maps every pixel to an L2-normalised embedding (16-D). The affinity of two pixels is
the cosine similarity of their embeddings; it is supervised at a set of short- and long-range
offsets (shifts 1, 3, 9, 27 along each axis by default) with a class-balanced squared error
against "same object" targets, instead of supervising the embedding directly. A cross-view
term asks the same network to give the same affinities between an image and a photometrically
perturbed copy. Instances come from the mutex watershed on these affinities: nearest-neighbour
affinities attract, long-range ones repel (back-end ``mutex_watershed``).

Departures from the reference code, on purpose:
- the reference segmented inside the ground-truth foreground at inference; ours predicts the
  foreground with an extra head (trained on known pixels) and segments inside it;
- the backbone is the library's UNet and affinities are supervised at full resolution only
  (the reference added the same loss at four coarser decoder scales);
- the second view is perturbed in intensity (contrast, brightness, blur), not by erasing boxes
  or flipping, and both views go through one forward pass;
- pairs whose partner leaves the crop are skipped rather than rolled around the border, and
  pairs with an unknown end are skipped, so sparse annotations train correctly.

Heads: ``embedding`` (E) and ``foreground`` (1). Decoded arrays: ``affinities`` (one channel
per offset, in [0, 1]), ``affinity_offsets`` (C x ndim), ``foreground`` (probability) and
``pixel_embedding`` (normalised, for display).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..arrays import InputError
from ..losses import known_instances, masked_mean
from ..losses.affinity import affinities_numpy, affinity_loss, offsets_from_shifts
from ..nets import UNetConfig, build_unet
from ..nets.momentum import perturb
from .base import Method


@dataclass(frozen=True)
class AffinityConfig:
    """Network shape, offsets and loss weights (paper defaults where it has them)."""

    ndim: int = 2
    in_channels: int = 1
    depth: int = 4
    width: int = 16
    embedding_dim: int = 16
    shifts: tuple[int, ...] = (1, 3, 9, 27)
    w_affinity: float = 1.0
    w_cross_view: float = 1.0
    w_foreground: float = 1.0

    def __post_init__(self):  # refused where the config is made, before any work
        if self.shifts and self.shifts[0] != 1:
            raise InputError(
                f"the first shift must be 1 (the attractive neighbours), got {self.shifts}"
            )

    @property
    def offsets(self) -> list[tuple[int, ...]]:
        return offsets_from_shifts(self.shifts, self.ndim)


class TwoViews(nn.Module):
    """In training, runs the network on the input and on a perturbed copy in one batch and
    adds the copy's embedding as ``embedding_view``; in evaluation, just the network."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if not self.training:
            return self.net(x)
        both = self.net(torch.cat([x, perturb(x, training=True)]))
        n = x.shape[0]
        out = {name: value[:n] for name, value in both.items()}
        out["embedding_view"] = both["embedding"][n:]
        return out


def heads(cfg: AffinityConfig) -> tuple[tuple[str, int], ...]:
    return (("embedding", cfg.embedding_dim), ("foreground", 1))


def build_net(cfg: AffinityConfig) -> nn.Module:
    unet = build_unet(UNetConfig(cfg.ndim, cfg.in_channels, cfg.depth, cfg.width, heads(cfg)))
    return TwoViews(unet) if cfg.w_cross_view else unet


def make_targets(labels: np.ndarray, known: np.ndarray, cfg: AffinityConfig) -> dict:
    """Object ids where known (0 elsewhere) and the known-pixel mask."""
    return known_instances(labels, known)


def make_loss(cfg: AffinityConfig):
    offsets = cfg.offsets

    def loss(outputs: dict, targets: dict) -> torch.Tensor:
        emb, fg = outputs["embedding"], outputs["foreground"]
        instances, known = targets["instances"], targets["known"]
        bce = F.binary_cross_entropy_with_logits(
            fg[:, 0], (instances > 0).to(fg.dtype), reduction="none"
        )
        total = cfg.w_foreground * masked_mean(bce, known)
        total = total + cfg.w_affinity * affinity_loss(emb, instances, known, offsets)
        if cfg.w_cross_view and "embedding_view" in outputs:
            cross = affinity_loss(emb, instances, known, offsets, other=outputs["embedding_view"])
            total = total + cfg.w_cross_view * cross
        return total

    return loss


def decode(raw, cfg: AffinityConfig) -> dict[str, np.ndarray]:
    emb = np.asarray(raw["embedding"], np.float32)
    fg = np.asarray(raw["foreground"], np.float32)[0]
    offsets = cfg.offsets
    norm = np.sqrt((emb**2).sum(0, keepdims=True))
    return {
        "affinities": affinities_numpy(emb, offsets),
        "affinity_offsets": np.asarray(offsets, np.int64).reshape(len(offsets), cfg.ndim),
        "foreground": 1.0 / (1.0 + np.exp(-fg)),
        "pixel_embedding": emb / np.maximum(norm, 1e-6),
    }


METHOD = Method(
    name="affinity",
    config_type=AffinityConfig,
    heads=heads,
    build_net=build_net,
    make_targets=make_targets,
    make_loss=make_loss,
    decode=decode,
    default_backend="mutex_watershed",
    backends=("mutex_watershed",),
    description="pixel-embedded affinity: embedding similarity at short and long offsets, "
    "mutex watershed",
    sparse_labels=True,
    head_kinds={"embedding": "scalar", "foreground": "scalar"},
)
