"""Pixel-embedding losses for sparse object-level labels (SPOCO, Wolny et al., CVPR 2022).

One image at a time; embeddings are ``(E, *spatial)``. ``instances`` holds annotated object
ids (0 = not an annotated object: unlabelled, or painted background). Annotated objects are
whole: a pixel outside object k is certainly not in k, which is what lets the soft-mask Dice
and the unlabelled push use every pixel of the crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DiscriminativeWeights:
    """Margins and weights of :func:`discriminative_terms` (SPOCO's README values)."""

    delta_var: float = 0.5
    delta_dist: float = 2.0
    pull: float = 1.0
    push: float = 1.0
    regulariser: float = 0.001
    instance: float = 1.0
    unlabelled_push: float = 1.0
    kernel_threshold: float = 0.5
    #: Push only pairs of objects that come within this many pixels of each other (0: every
    #: pair in the crop, as the reference does).
    push_radius: int = 0


def kernel_scale(delta_var: float, kernel_threshold: float) -> float:
    """``2 sigma^2`` of the Gaussian kernel that equals ``kernel_threshold`` at ``delta_var``."""
    if not 0 < kernel_threshold < 1:
        raise ValueError(f"kernel_threshold must be in (0, 1), got {kernel_threshold}")
    return delta_var**2 / -math.log(kernel_threshold)


def soft_dice(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """``1 - 2 sum(ab) / (sum a^2 + sum b^2)`` over all elements (one joint Dice)."""
    return 1 - 2 * (a * b).sum() / ((a * a).sum() + (b * b).sum()).clamp_min(eps)


def neighbouring_objects(instances: torch.Tensor, ids: torch.Tensor, radius: int) -> torch.Tensor:
    """``(K, K)`` bool: objects ``ids`` of ``instances`` (``(*spatial)``) that come within
    ``radius`` pixels of each other (a square / cube neighbourhood; the diagonal is True)."""
    import torch.nn.functional as F

    shape = (-1,) + (1,) * instances.ndim
    masks = (instances[None] == ids.view(shape)).to(torch.float32)
    pool = F.max_pool2d if instances.ndim == 2 else F.max_pool3d
    grown = pool(masks[None], 2 * radius + 1, stride=1, padding=radius)[0]
    return (grown.flatten(1) @ masks.flatten(1).T) > 0


def discriminative_terms(
    emb: torch.Tensor,
    instances: torch.Tensor,
    w: DiscriminativeWeights,
) -> torch.Tensor:
    """Weighted sum of pull, push, regulariser, soft-mask Dice and unlabelled push.

    - pull: annotated pixels further than ``delta_var`` from their object's mean embedding;
    - push: object means closer than ``2 delta_dist`` to each other (every pair, or with
      ``push_radius`` > 0 only pairs of objects that come within that many pixels of each
      other, averaged over those pairs);
    - regulariser: the norm of the means;
    - instance: Dice between each object's Gaussian soft mask around its mean and its mask;
    - unlabelled push: every pixel that is in no annotated object (unlabelled or known
      background) closer than ``delta_dist`` to an object mean.
    Terms that need an object are zero (with a gradient path) when none is annotated.
    """
    e = emb.flatten(1)  # (E, P)
    lab = instances.flatten()
    zero = e.sum() * 0.0
    in_obj = lab > 0
    if not bool(in_obj.any()):
        return zero
    ids, inv = torch.unique(lab[in_obj], return_inverse=True)
    k = ids.numel()
    e_obj = e[:, in_obj]  # (E, n)
    counts = torch.bincount(inv, minlength=k).to(e.dtype)
    means = torch.zeros(k, e.shape[0], dtype=e.dtype, device=e.device)
    means = means.index_add(0, inv, e_obj.T) / counts[:, None]  # (K, E)

    dist_own = (e_obj - means[inv].T).norm(dim=0)
    hinge = torch.clamp(dist_own - w.delta_var, min=0) ** 2
    pull = (hinge / counts[inv]).sum() / k

    push = zero
    if k > 1:
        d = torch.cdist(means, means)
        pairs = ~torch.eye(k, dtype=torch.bool, device=e.device)
        if w.push_radius > 0:
            pairs &= neighbouring_objects(instances, ids, w.push_radius)
        n_pairs = int(pairs.sum())
        if n_pairs:
            push = (torch.clamp(2 * w.delta_dist - d[pairs], min=0) ** 2).sum() / n_pairs

    regulariser = means.norm(dim=1).mean()

    d_all = torch.cdist(means, e.T)  # (K, P)
    scale = kernel_scale(w.delta_var, w.kernel_threshold)
    soft = torch.exp(-(d_all**2) / scale)
    hard = (lab[None, :] == ids[:, None]).to(e.dtype)
    instance = soft_dice(soft, hard)

    unlabelled_push = zero
    outside = ~in_obj
    if bool(outside.any()):
        near = torch.clamp(w.delta_dist - d_all[:, outside], min=0) ** 2
        unlabelled_push = near.mean(dim=1).mean()
    return (
        w.pull * pull
        + w.push * push
        + w.regulariser * regulariser
        + w.instance * instance
        + w.unlabelled_push * unlabelled_push
    )


def consistency_term(
    emb_f: torch.Tensor,
    emb_g: torch.Tensor,
    region: torch.Tensor,
    *,
    delta_var: float = 0.5,
    kernel_threshold: float = 0.5,
    max_anchors: int = 20,
    volume_threshold: float = 0.05,
) -> torch.Tensor | None:
    """SPOCO's embedding consistency between two views on the unlabelled ``region``.

    Anchors are drawn one after another from the part of ``region`` not yet within
    ``delta_var`` of an earlier anchor (in either view), while that part covers at least
    ``volume_threshold`` of the image. Each anchor gives a Gaussian soft mask in f and in g
    (around the anchor's own embedding in each); the loss is one Dice between the two
    stacks, with g treated as the target (no gradient). ``None`` when the region is too small.
    """
    e_f = emb_f.flatten(1)
    e_g = emb_g.flatten(1).detach()
    remaining = region.flatten().clone()
    need = max(volume_threshold * remaining.numel(), 1)
    anchors = []
    with torch.no_grad():  # choose the anchors; the masks are built in one go below
        # pixels as rows: reductions over the embedding axis are much faster this way
        rows_f, rows_g = e_f.detach().T.contiguous(), e_g.T.contiguous()
        radius2 = delta_var**2
        for _ in range(max_anchors):
            available = torch.nonzero(remaining).flatten()
            if available.numel() < need:
                break
            a = available[torch.randint(available.numel(), (1,), device=available.device)]
            anchors.append(a)
            near_f = ((rows_f - rows_f[a]) ** 2).sum(dim=1) < radius2
            near_g = ((rows_g - rows_g[a]) ** 2).sum(dim=1) < radius2
            remaining &= ~(near_f | near_g)
            remaining[a] = False
    if not anchors:
        return None
    idx = torch.cat(anchors)
    scale = kernel_scale(delta_var, kernel_threshold)
    masks_f = torch.exp(-(torch.cdist(e_f[:, idx].T, e_f.T) ** 2) / scale)
    masks_g = torch.exp(-(torch.cdist(e_g[:, idx].T, e_g.T) ** 2) / scale)
    return soft_dice(masks_f, masks_g)
