"""Flow dynamics: instances from predicted flows and distance, the Omnipose way.

Cutler, Stringer, Lo, Rappez, Stroustrup, Peterson, Wiggins, Mougous, "Omnipose: a
high-precision morphology-independent solution for bacterial cell segmentation", Nature
Methods 19, 2022.

A network predicts, for every pixel, a unit vector pointing away from its object's boundary
towards the object's medial ridge (``flow``) and a distance to the boundary (``distance``,
negative on background). Pixels whose distance exceeds ``mask_threshold`` move along the flow,
made unit length and, with ``suppress``, scaled by its normalised divergence
(:func:`scale_by_divergence`: fast near boundaries, stopping on ridges), by damped Euler
steps: each step is the mean of the flow sampled where the pixel is and the previous step,
divided by ``1 + t``. The damping keeps the total travel under ``ln(niter) + 1`` pixels, so
the pixels of one object end up as one compact cloud shrunk towards its ridge, while the edge
pixels of two touching objects, flowing in opposite directions, end up several pixels apart.
The end points are rounded to the grid; each connected cloud of end points (connectivity =
ndim: 8 in 2D, 26 in 3D) is one object, and every pixel gets the object of its end point.
Objects whose flows, recomputed from their own mask
(:func:`~napari_instseg.core.flow_fields.labels_to_fields`), disagree with the predicted
flow by a mean squared error above ``flow_threshold`` are dropped, as Omnipose does.

Departures from Omnipose, on purpose:
- the foreground is a plain threshold on the distance (Omnipose: hysteresis between
  ``mask_threshold - 1`` and ``mask_threshold``);
- the flow is sampled bilinearly (Omnipose samples the nearest pixel when it damps the steps);
- without ``suppress`` the flows are still made unit length (Omnipose follows them as
  predicted, divided by 5), since a network's flows shrink where it is unsure;
- end-point clouds are never clustered with DBSCAN; instead, a group with fewer than
  ``min_size`` pixels that touches a larger group joins the neighbour it shares most
  face-adjacent pixel pairs with, so fragments of a split cloud stay with their object rather
  than leaving a hole; isolated small groups are removed;
- holes (background enclosed by a single object) smaller than ``min_size`` are filled.

The integration is a numba kernel that moves each foreground pixel through all its steps
before the next one (cache friendly); it releases the GIL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import numba
import numpy as np
from scipy import ndimage as ndi
from scipy.special import expit

from ..arrays import LABEL_DTYPE, face_neighbours
from ..flow_fields import labels_to_fields
from .labels import fill_small_holes, finish_labels

__all__ = [
    "FlowDynamicsConfig",
    "absorb_small_groups",
    "estimate_niter",
    "flow_errors",
    "follow_flows",
    "group_end_points",
    "remove_bad_flow_masks",
    "scale_by_divergence",
    "segment_flow_dynamics",
    "unit_flows",
]


@dataclass(frozen=True)
class FlowDynamicsConfig:
    """Knobs of :func:`segment_flow_dynamics` (Omnipose's defaults)."""

    mask_threshold: Annotated[
        float,
        {"min": -5.0, "max": 5.0, "step": 0.1, "tooltip": "distance above which a pixel is inside"},
    ] = 0.0
    flow_threshold: Annotated[
        float,
        {
            "min": 0.0,
            "max": 4.0,
            "step": 0.05,
            "tooltip": "drop objects whose flows disagree more than this (mean squared error); "
            "0 keeps all",
        },
    ] = 0.4
    niter: Annotated[
        int,
        {"min": 0, "max": 1000, "tooltip": "Euler steps; 0 = from the estimated object diameter"},
    ] = 0
    suppress: Annotated[
        bool,
        {
            "tooltip": "slow pixels down where flows converge (keeps thin bent objects whole); "
            "off: unit-speed steps, which separate large touching objects further"
        },
    ] = True
    min_size: Annotated[
        int,
        {
            "min": 0,
            "max": 100000,
            "tooltip": "objects smaller than this (pixels) are removed, holes smaller are filled",
        },
    ] = 15


# ---------------------------------------------------------------------------------------------
# integration


@numba.njit(cache=True, nogil=True)
def _follow_2d(flow, coords, niter, out):
    ny, nx = flow.shape[1], flow.shape[2]
    for i in range(coords.shape[0]):
        y = float(coords[i, 0])
        x = float(coords[i, 1])
        vy = 0.0
        vx = 0.0
        for t in range(-1, niter):
            y0 = min(int(y), max(ny - 2, 0))
            x0 = min(int(x), max(nx - 2, 0))
            y1 = min(y0 + 1, ny - 1)
            x1 = min(x0 + 1, nx - 1)
            fy = y - y0
            fx = x - x0
            w00 = (1.0 - fy) * (1.0 - fx)
            w01 = (1.0 - fy) * fx
            w10 = fy * (1.0 - fx)
            w11 = fy * fx
            sy = (
                w00 * flow[0, y0, x0]
                + w01 * flow[0, y0, x1]
                + w10 * flow[0, y1, x0]
                + w11 * flow[0, y1, x1]
            )
            sx = (
                w00 * flow[1, y0, x0]
                + w01 * flow[1, y0, x1]
                + w10 * flow[1, y1, x0]
                + w11 * flow[1, y1, x1]
            )
            if t < 0:  # the first step averages the starting flow with itself
                vy = sy
                vx = sx
                continue
            vy = 0.5 * (vy + sy)
            vx = 0.5 * (vx + sx)
            damp = 1.0 / (1.0 + t)
            y = min(max(y + vy * damp, 0.0), ny - 1.0)
            x = min(max(x + vx * damp, 0.0), nx - 1.0)
        out[i, 0] = y
        out[i, 1] = x


@numba.njit(cache=True, nogil=True)
def _follow_3d(flow, coords, niter, out):
    nz, ny, nx = flow.shape[1], flow.shape[2], flow.shape[3]
    for i in range(coords.shape[0]):
        p0 = float(coords[i, 0])
        p1 = float(coords[i, 1])
        p2 = float(coords[i, 2])
        v0 = 0.0
        v1 = 0.0
        v2 = 0.0
        for t in range(-1, niter):
            z0 = min(int(p0), max(nz - 2, 0))
            y0 = min(int(p1), max(ny - 2, 0))
            x0 = min(int(p2), max(nx - 2, 0))
            z1 = min(z0 + 1, nz - 1)
            y1 = min(y0 + 1, ny - 1)
            x1 = min(x0 + 1, nx - 1)
            fz = p0 - z0
            fy = p1 - y0
            fx = p2 - x0
            s0 = 0.0
            s1 = 0.0
            s2 = 0.0
            for cz in range(2):
                wz = fz if cz else 1.0 - fz
                zz = z1 if cz else z0
                for cy in range(2):
                    wy = fy if cy else 1.0 - fy
                    yy = y1 if cy else y0
                    for cx in range(2):
                        w = wz * wy * (fx if cx else 1.0 - fx)
                        xx = x1 if cx else x0
                        s0 += w * flow[0, zz, yy, xx]
                        s1 += w * flow[1, zz, yy, xx]
                        s2 += w * flow[2, zz, yy, xx]
            if t < 0:
                v0 = s0
                v1 = s1
                v2 = s2
                continue
            v0 = 0.5 * (v0 + s0)
            v1 = 0.5 * (v1 + s1)
            v2 = 0.5 * (v2 + s2)
            damp = 1.0 / (1.0 + t)
            p0 = min(max(p0 + v0 * damp, 0.0), nz - 1.0)
            p1 = min(max(p1 + v1 * damp, 0.0), ny - 1.0)
            p2 = min(max(p2 + v2 * damp, 0.0), nx - 1.0)
        out[i, 0] = p0
        out[i, 1] = p1
        out[i, 2] = p2


def follow_flows(flow: np.ndarray, foreground: np.ndarray, *, niter: int) -> np.ndarray:
    """Move every foreground pixel along ``flow`` by ``niter`` damped Euler steps.

    Parameters
    ----------
    flow : ndarray (ndim, *S)
        Displacement per step in pixels, ZYX order; sampled bilinearly.
    foreground : ndarray of bool (*S)
        Pixels to move.
    niter : int
        Number of steps. Step ``t`` (from 0) moves by the mean of the flow sampled at the
        current position and the previous step, divided by ``1 + t``; positions are clamped
        to the image.

    Returns
    -------
    ndarray of float32, (n, ndim)
        End positions of the foreground pixels, in ``np.flatnonzero(foreground)`` order.
    """
    flow = np.ascontiguousarray(flow, dtype=np.float32)
    ndim = flow.shape[0]
    if ndim not in (2, 3) or flow.shape[1:] != foreground.shape:
        raise ValueError(
            f"flow must be (ndim, *S) with S = {foreground.shape}, got shape {flow.shape}"
        )
    coords = np.argwhere(foreground).astype(np.float32)
    out = np.empty_like(coords)
    if coords.shape[0]:
        (_follow_2d if ndim == 2 else _follow_3d)(flow, coords, int(max(niter, 0)), out)
    return out


def unit_flows(flow: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """``flow`` scaled to unit length on the foreground (0 elsewhere and where it vanishes).

    A network's flows shrink where it is unsure (near boundaries and ridges); followed as
    they are, those pixels would hardly move.
    """
    flow = np.asarray(flow, np.float32)
    norm = np.sqrt((flow**2).sum(axis=0))
    return np.where(foreground & (norm > 1e-6), flow / np.maximum(norm, 1e-6), 0.0).astype(
        np.float32
    )


def scale_by_divergence(flow: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Unit flows on the foreground times their divergence rescaled to [0, 1].

    Omnipose's "suppression": the flows converge (negative divergence) on each object's
    ridge and diverge at its boundary, so with the divergence mapped to [0, 1] (0.01 and
    99.99 percentiles over the foreground) pixels move fast near the boundary and stop once
    they reach the ridge, instead of also sliding along it. Without it, pixels of a thin bent
    object slide apart along the ridge from its saddle points and the object splits.
    """
    unit = unit_flows(flow, foreground)
    div = sum(np.gradient(unit[d], axis=d) for d in range(unit.shape[0]) if unit.shape[d + 1] > 1)
    if np.ndim(div) == 0:
        return unit
    lo, hi = np.percentile(div[foreground], [0.01, 99.99])
    scale = np.clip((div - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    return (unit * scale).astype(np.float32)


def estimate_niter(distance: np.ndarray, foreground: np.ndarray) -> int:
    """Euler steps for objects of the typical size: their mean diameter, from the distance.

    For an n-ball, the mean distance to the boundary is ``R / (n + 1)``, so the diameter is
    ``2 (n + 1)`` times the mean positive distance (Omnipose's estimate). Clipped to 5..500.
    """
    values = np.asarray(distance)[foreground]
    values = values[values > 0]
    if values.size == 0:
        return 5
    diameter = 2.0 * (distance.ndim + 1) * float(values.mean())
    return int(np.clip(round(diameter), 5, 500))


# ---------------------------------------------------------------------------------------------
# grouping


def group_end_points(end_points: np.ndarray, foreground: np.ndarray) -> np.ndarray:
    """Label each foreground pixel by the connected cloud its end point falls in.

    End points are rounded to the grid; clouds are connected components of the pixels hit
    by at least one end point, with full connectivity. Labels are the component ids (not
    consecutive after later filtering), ``uint32``, 0 off the foreground.
    """
    shape = foreground.shape
    labels = np.zeros(shape, LABEL_DTYPE)
    if end_points.shape[0] == 0:
        return labels
    grid = np.rint(end_points).astype(np.intp)
    for d, size in enumerate(shape):
        np.clip(grid[:, d], 0, size - 1, out=grid[:, d])
    flat = np.ravel_multi_index(tuple(grid.T), shape)
    hit = np.zeros(int(np.prod(shape)), bool)
    hit[flat] = True
    clouds, _ = ndi.label(
        hit.reshape(shape), structure=ndi.generate_binary_structure(len(shape), len(shape))
    )
    labels.ravel()[np.flatnonzero(foreground)] = clouds.ravel()[flat]
    return labels


def _face_pairs(labels: np.ndarray):
    """Label pairs (a, b) of face-adjacent pixels that are both objects and differ."""
    firsts, seconds = [], []
    for lo, hi in face_neighbours(labels.ndim):
        a, b = labels[lo].ravel(), labels[hi].ravel()
        keep = (a != b) & (a > 0) & (b > 0)
        firsts += [a[keep], b[keep]]
        seconds += [b[keep], a[keep]]
    return np.concatenate(firsts), np.concatenate(seconds)


def absorb_small_groups(labels: np.ndarray, min_size: int) -> np.ndarray:
    """Merge groups under ``min_size`` pixels into the larger group they touch most.

    A split end-point cloud leaves a small group inside or beside its object; merging it is
    better than removing it (which would leave a hole or a bite). Groups that touch no
    larger group are left for the size filter. One pass: small groups that only touch other
    small groups stay apart.
    """
    if min_size <= 1 or not labels.any():
        return labels
    sizes = np.bincount(labels.ravel())
    small = sizes < min_size
    small[0] = False
    if not small.any():
        return labels
    a, b = _face_pairs(labels)
    keep = small[a] & ~small[b]
    if not keep.any():
        return labels
    a, b = a[keep], b[keep]
    # count contacts per (small, large) pair and keep the most frequent partner
    n = np.uint64(sizes.size)
    pair = a.astype(np.uint64) * n + b.astype(np.uint64)
    pairs, counts = np.unique(pair, return_counts=True)
    src, dst = (pairs // n).astype(np.intp), (pairs % n).astype(np.intp)
    order = np.lexsort((-counts, src))  # by source, most contacts first
    src, dst = src[order], dst[order]
    first = np.r_[True, src[1:] != src[:-1]]
    lut = np.arange(sizes.size, dtype=LABEL_DTYPE)
    lut[src[first]] = dst[first]
    return lut[labels]


# ---------------------------------------------------------------------------------------------
# checks and clean-up


def flow_errors(labels: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Per object, the mean over its pixels of ``|mu - flow|^2``, where ``mu`` are the flows
    recomputed from ``labels``; index = label id (entry 0 unused)."""
    mu = labels_to_fields(labels).flow
    err = ((mu - np.asarray(flow, np.float32)) ** 2).sum(axis=0)
    n = int(labels.max()) + 1
    sums = np.bincount(labels.ravel(), weights=err.ravel(), minlength=n)
    counts = np.bincount(labels.ravel(), minlength=n)
    return sums / np.maximum(counts, 1)


def remove_bad_flow_masks(labels: np.ndarray, flow: np.ndarray, threshold: float) -> np.ndarray:
    """Set objects whose :func:`flow_errors` exceed ``threshold`` to background."""
    if threshold <= 0 or not labels.any():
        return labels
    bad = flow_errors(labels, flow) > threshold
    bad[0] = False
    if not bad.any():
        return labels
    return np.where(bad[labels], 0, labels).astype(labels.dtype, copy=False)


# ---------------------------------------------------------------------------------------------
# the back-end


def decode_flows(raw: Mapping[str, np.ndarray], flow_scale: float) -> dict[str, np.ndarray]:
    """A flows branch's raw heads (``flow``, ``distance``, ``boundary`` logit) to the arrays
    this back-end reads; ``foreground`` is the sigmoid of the distance, a display map."""
    distance = np.asarray(raw["distance"], np.float32)[0]
    return {
        "flow": np.asarray(raw["flow"], np.float32) / flow_scale,
        "distance": distance,
        "boundary": expit(np.asarray(raw["boundary"], np.float32)[0]),
        "foreground": expit(distance),
    }


def segment_flow_dynamics(
    arrays: Mapping[str, np.ndarray],
    config: FlowDynamicsConfig | None = None,
    *,
    mask: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Instances from a flow field and a distance map by following the flows.

    Parameters
    ----------
    arrays : mapping
        ``flow`` (ndim, *S): unit-ish vectors, ZYX order, pointing from each object's
        boundary towards its ridge; ``distance`` (*S): positive inside objects.
    config : FlowDynamicsConfig, optional
        The knobs (defaults when omitted):

        - ``mask_threshold``: distance above which a pixel belongs to some object;
        - ``flow_threshold``: objects whose recomputed flows differ from ``flow`` by a mean
          squared error above this are dropped; 0 keeps every object;
        - ``niter``: Euler steps; 0 estimates them from the mean object diameter
          (:func:`estimate_niter`);
        - ``suppress``: scale the unit flows by their normalised divergence
          (:func:`scale_by_divergence`), as Omnipose does; otherwise follow the unit flows
          (:func:`unit_flows`);
        - ``min_size``: smaller objects (pixels) are merged into a touching larger one or
          removed; enclosed holes smaller than this are filled.
    mask : ndarray of bool, optional
        Pixels allowed to be foreground.
    rng : numpy.random.Generator, optional
        Unused (the result is deterministic); accepted for the back-end contract.

    Returns
    -------
    ndarray of uint32 (*S)
        0 = background, objects 1..N.
    """
    config = FlowDynamicsConfig() if config is None else config
    min_size = config.min_size
    distance = np.asarray(arrays["distance"], np.float32)
    flow = np.asarray(arrays["flow"], np.float32)
    foreground = distance > config.mask_threshold
    if mask is not None:
        mask = np.asarray(mask, bool)
        foreground &= mask
    if not foreground.any():
        return np.zeros(distance.shape, LABEL_DTYPE)
    steps = config.niter if config.niter > 0 else estimate_niter(distance, foreground)
    field = (scale_by_divergence if config.suppress else unit_flows)(flow, foreground)
    ends = follow_flows(field, foreground, niter=steps)
    labels = group_end_points(ends, foreground)
    labels = absorb_small_groups(labels, min_size)
    labels = remove_bad_flow_masks(labels, flow, config.flow_threshold)
    labels = fill_small_holes(labels, min_size)
    if mask is not None:
        labels[~mask] = 0
    return finish_labels(labels, min_size)
