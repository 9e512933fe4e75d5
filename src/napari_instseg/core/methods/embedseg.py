"""EmbedSeg: spatial embeddings with a learnt bandwidth and a seediness map.

Lalit, Tomancak, Jug, "Embedding-based Instance Segmentation in Microscopy", MIDL 2021, and
"EmbedSeg: Embedding-based Instance Segmentation for Biomedical Microscopy Data", Medical
Image Analysis 2022.

Every pixel predicts where its object's centre is (an offset, squashed by tanh, added to the
pixel's own position on a fixed coordinate grid), a per-axis bandwidth that says how tightly
its object's pixels cluster around that centre, and a seediness: how close it is to the
centre in that sense. Objects are grown greedily from the most seed-like pixels (back-end
``seeds``).

Our backbone is the library's UNet rather than the paper's branched ERFNet: the heads and
the loss are the paper's. Heads: ``offsets`` (ndim), ``sigma`` (ndim), ``seed`` (1).
Decoded arrays: ``embedding`` (ndim, *S), ``bandwidth`` (ndim, *S) = exp(10 sigma),
``seediness`` (*S), and ``offsets`` (ndim, *S) in pixels, for inspection.

Loss, per image, averaged over the batch: for each annotated object k with centre c_k (the
pixel of the object closest to its per-axis median, the "approximate medoid") and mean sigma
s_k, the Gaussian phi_i = exp(-sum_d exp(10 s_k,d) (e_i,d - c_k,d)^2) is pushed to the
object's mask by a Lovász hinge on (2 phi - 1); sigma inside the object is pulled to s_k; the
seediness regresses phi inside objects (weighted by ``foreground_weight``) and 0 on
background. Only known pixels enter any term, so sparse annotations train it too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..losses import lovasz_hinge_flat
from ..nets import UNetConfig, build_unet
from .base import Method


@dataclass(frozen=True)
class EmbedSegConfig:
    """Network shape, coordinate grid and loss weights (paper defaults)."""

    ndim: int = 2
    in_channels: int = 1
    depth: int = 4
    width: int = 16
    grid_spacing: float = 1.0 / 1023.0  # a 1024-pixel image spans [0, 1]
    foreground_weight: float = 10.0
    w_inst: float = 1.0
    w_var: float = 10.0
    w_seed: float = 1.0


def heads(cfg: EmbedSegConfig) -> tuple[tuple[str, int], ...]:
    return (("offsets", cfg.ndim), ("sigma", cfg.ndim), ("seed", 1))


def build_net(cfg: EmbedSegConfig) -> torch.nn.Module:
    net = build_unet(UNetConfig(cfg.ndim, cfg.in_channels, cfg.depth, cfg.width, heads(cfg)))
    # Start with zero offsets and a wide bandwidth (sigma = 1 -> exp(10)), as the paper does.
    torch.nn.init.zeros_(net.heads["offsets"].weight)
    torch.nn.init.zeros_(net.heads["offsets"].bias)
    torch.nn.init.zeros_(net.heads["sigma"].weight)
    torch.nn.init.ones_(net.heads["sigma"].bias)
    return net


def approximate_medoids(labels: np.ndarray) -> np.ndarray:
    """Mask with one pixel per object: the object pixel closest to the object's per-axis
    median (EmbedSeg's "approximate medoid": always inside the object, unlike a centroid)."""
    centres = np.zeros(labels.shape, bool)
    flat = labels.ravel()
    fg = np.flatnonzero(flat)
    if fg.size == 0:
        return centres
    ids = flat[fg]
    order = np.argsort(ids, kind="stable")
    fg, ids = fg[order], ids[order]
    coords = np.stack(np.unravel_index(fg, labels.shape), axis=1).astype(np.float64)
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], ids.size]
    for a, b in zip(starts, ends, strict=True):
        pts = coords[a:b]
        median = np.median(pts, axis=0)
        best = a + int(np.argmin(((pts - median) ** 2).sum(axis=1)))
        centres.ravel()[fg[best]] = True
    return centres


def make_targets(labels: np.ndarray, known: np.ndarray, cfg: EmbedSegConfig) -> dict:
    """Instance ids, their centre pixels and the known-pixel mask."""
    labels = np.asarray(labels)
    return {
        "instances": labels.astype(np.int64),
        "centres": approximate_medoids(labels),
        "known": np.asarray(known, bool),
    }


def coordinate_grid(shape, spacing: float, device=None) -> torch.Tensor:
    """(ndim, *shape) pixel coordinates in grid units."""
    axes = [torch.arange(s, dtype=torch.float32, device=device) * spacing for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def _image_loss(offsets, sigma, seed, instances, centres, known, grid, cfg):
    nd = cfg.ndim
    emb = torch.tanh(offsets) + grid
    seed = torch.sigmoid(seed[0])
    known_f = known.to(seed.dtype)
    emb_k = emb[:, known]  # (nd, n_known)
    inst_known = instances[known]
    seed_loss = ((seed**2) * (known & (instances == 0)).to(seed.dtype)).sum()
    ids = torch.unique(instances[known & (instances > 0)])
    inst_loss = var_loss = seed.sum() * 0.0
    for k in ids:
        in_k = instances == k
        centre_here = centres & in_k
        if centre_here.sum() == 1:
            c = grid[:, centre_here].reshape(nd, 1)
        else:
            c = grid[:, in_k].mean(dim=1, keepdim=True)
        s_pix = sigma[:, in_k]
        s_k = s_pix.mean(dim=1, keepdim=True)
        var_loss = var_loss + ((s_pix - s_k.detach()) ** 2).mean()
        precision = torch.exp(10.0 * s_k)
        phi = torch.exp(-(precision * (emb_k - c) ** 2).sum(dim=0))
        inst_loss = inst_loss + lovasz_hinge_flat(2.0 * phi - 1.0, (inst_known == k).float())
        phi_in = phi[inst_known == k]
        seed_loss = (
            seed_loss + cfg.foreground_weight * ((seed[known & in_k] - phi_in.detach()) ** 2).sum()
        )
    n = max(len(ids), 1)
    seed_term = seed_loss / known_f.sum().clamp_min(1.0)
    return cfg.w_inst * inst_loss / n + cfg.w_var * var_loss / n + cfg.w_seed * seed_term


def make_loss(cfg: EmbedSegConfig):
    def loss(outputs: dict, targets: dict) -> torch.Tensor:
        offsets, sigma, seed = outputs["offsets"], outputs["sigma"], outputs["seed"]
        grid = coordinate_grid(offsets.shape[2:], cfg.grid_spacing, device=offsets.device)
        total = offsets.sum() * 0.0
        for b in range(offsets.shape[0]):
            total = total + _image_loss(
                offsets[b],
                sigma[b],
                seed[b],
                targets["instances"][b],
                targets["centres"][b],
                targets["known"][b],
                grid,
                cfg,
            )
        return total / offsets.shape[0]

    return loss


def decode(raw, cfg: EmbedSegConfig) -> dict[str, np.ndarray]:
    offsets = np.asarray(raw["offsets"], np.float32)
    spatial = offsets.shape[1:]
    grid = np.stack(
        np.meshgrid(
            *[np.arange(s, dtype=np.float32) * cfg.grid_spacing for s in spatial], indexing="ij"
        )
    )
    seed = np.asarray(raw["seed"], np.float32)[0]
    shift = np.tanh(offsets)
    return {
        "embedding": shift + grid,
        "offsets": shift / cfg.grid_spacing,  # pixels from each pixel to its predicted centre
        "bandwidth": np.exp(10.0 * np.asarray(raw["sigma"], np.float32)),
        "seediness": 1.0 / (1.0 + np.exp(-seed)),
    }


METHOD = Method(
    name="embedseg",
    config_type=EmbedSegConfig,
    heads=heads,
    build_net=build_net,
    make_targets=make_targets,
    make_loss=make_loss,
    decode=decode,
    default_backend="seeds",
    backends=("seeds",),
    description="EmbedSeg: offsets to instance centres + learnt bandwidth + seediness",
    sparse_labels=True,
    head_kinds={"offsets": "vector", "sigma": "axes", "seed": "scalar"},
)
