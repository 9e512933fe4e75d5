"""Affinities between pixel embeddings at fixed offsets, and their class-balanced loss.

The affinity of pixel p with its partner p + o is the dot product of their L2-normalised
embeddings (a cosine similarity). Only pairs whose two pixels both lie inside the crop are
scored, so no wrap-around pair (as ``torch.roll`` would make) ever enters the loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def pair_slices(offset: Sequence[int], shape: Sequence[int]) -> tuple[tuple, tuple]:
    """Slices ``(src, dst)`` of the spatial axes such that ``dst`` is ``src`` moved by
    ``offset``; both are empty along an axis where the offset is longer than the image."""
    src, dst = [], []
    for o, n in zip(offset, shape, strict=True):
        o = int(o)
        if abs(o) >= n:
            src.append(slice(0, 0))
            dst.append(slice(0, 0))
        elif o >= 0:
            src.append(slice(0, n - o))
            dst.append(slice(o, n))
        else:
            src.append(slice(-o, n))
            dst.append(slice(0, n + o))
    return tuple(src), tuple(dst)


def offsets_from_shifts(shifts: Sequence[int], ndim: int) -> list[tuple[int, ...]]:
    """For every shift s, one offset of -s along each axis: ``(-s, 0), (0, -s)`` in 2D.

    The first ``ndim`` offsets (the smallest shift) are the attractive, nearest-neighbour ones.
    """
    out = []
    for s in shifts:
        for axis in range(ndim):
            o = [0] * ndim
            o[axis] = -int(s)
            out.append(tuple(o))
    return out


def balanced_mse(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Squared error averaged over ``valid`` pairs, with the rarer class up-weighted.

    With f the fraction of positive pairs (clipped to [0.05, 0.99]), the minority class gets
    weight ``max(f, 1 - f) / min(f, 1 - f)`` and the majority 1; a channel with a single
    class is weighted uniformly (the weighting of Huang et al.'s reference).
    """
    valid = valid.to(pred.dtype)
    n = valid.sum()
    if float(n) == 0:
        return pred.sum() * 0.0
    positives = (target * valid).sum()
    weights = torch.ones_like(pred)
    if 0 < float(positives) < float(n):
        f = float(positives / n)
        f = min(max(f, 0.05), 0.99)
        ratio = max(f, 1 - f) / min(f, 1 - f)
        rare = 1.0 if f < 0.5 else 0.0
        weights = torch.where(target == rare, ratio, 1.0)
    return (weights * valid * (pred - target) ** 2).sum() / n


def affinity_loss(
    emb: torch.Tensor,
    instances: torch.Tensor,
    known: torch.Tensor,
    offsets: Sequence[Sequence[int]],
    *,
    other: torch.Tensor | None = None,
) -> torch.Tensor:
    """Class-balanced MSE between embedding affinities and same-object targets.

    Parameters
    ----------
    emb : tensor (B, E, *spatial)
        Raw embeddings; normalised here.
    instances : tensor (B, *spatial)
        Object ids, 0 for background (known or not).
    known : tensor (B, *spatial) of bool
        Pixels whose label is known; a pair counts only when both ends are known.
    offsets : sequence of offset vectors
    other : tensor (B, E, *spatial), optional
        Embeddings of a second view: the affinity pairs ``emb`` at p with ``other`` at
        p + o (the cross-view term). ``emb`` itself is used when not given.

    Returns the sum over offsets of the per-sample losses, averaged over the batch.
    """
    e = torch.nn.functional.normalize(emb, dim=1)
    e2 = e if other is None else torch.nn.functional.normalize(other, dim=1)
    spatial = tuple(emb.shape[2:])
    total = emb.sum() * 0.0
    for offset in offsets:
        src, dst = pair_slices(offset, spatial)
        a = (e[(slice(None), slice(None), *src)] * e2[(slice(None), slice(None), *dst)]).sum(1)
        lab_a = instances[(slice(None), *src)]
        lab_b = instances[(slice(None), *dst)]
        target = (lab_a == lab_b).to(a.dtype)
        valid = known[(slice(None), *src)] & known[(slice(None), *dst)]
        for b in range(a.shape[0]):
            total = total + balanced_mse(a[b], target[b], valid[b]) / a.shape[0]
    return total


def affinities_numpy(embedding: np.ndarray, offsets: Sequence[Sequence[int]]) -> np.ndarray:
    """Affinities ``(len(offsets), *spatial)`` in [0, 1] from an ``(E, *spatial)`` embedding:
    the cosine similarity clipped at 0 (negative similarity is no affinity). Pairs that
    leave the image get 0."""
    emb = np.asarray(embedding, np.float32)
    norm = np.sqrt((emb**2).sum(0, keepdims=True))
    e = emb / np.maximum(norm, 1e-6)
    spatial = e.shape[1:]
    out = np.zeros((len(offsets), *spatial), np.float32)
    for c, offset in enumerate(offsets):
        src, dst = pair_slices(offset, spatial)
        a = np.einsum("e...,e...->...", e[(slice(None), *src)], e[(slice(None), *dst)])
        out[(c, *src)] = np.clip(a, 0.0, 1.0)
    return out
