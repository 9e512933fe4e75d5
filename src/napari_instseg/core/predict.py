"""Tiled network inference with halo and blended overlaps, 2D and 3D, stoppable.

The image is cut into overlapping tiles whose size is a multiple of what the network needs;
the outer half of each halo only gives context, and each tile's output is weighted by a window
that fades out over the inner half, so seams between tiles get a smooth average rather than a
hard cut. The result is a :class:`Prediction`: the
network's raw outputs by head name, which post-processing re-uses without the network.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np

from .arrays import InputError
from .jobs import Job, Progress, stop_requested

#: The device names :func:`select_device` takes (``cuda`` also as ``cuda:N``): the one list
#: that the widgets offer and the configs declare.
DEVICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class PredictConfig:
    """How to run a network over an image. The ranges are checked by
    :func:`~napari_instseg.core.configs.check_ranges` (the CLI does so before any work)."""

    tile_size: Annotated[int, {"min": 16, "max": 16384, "tooltip": "tile side (pixels)"}] = 512
    halo: Annotated[int, {"min": 0, "max": 4096, "tooltip": "context around each tile"}] = 32
    device: Annotated[str, {"offered": DEVICES}] = "auto"
    batch_size: Annotated[int, {"min": 1, "max": 4096}] = 1
    tta: bool = False  # average over 8 flips/rotations (2D) or 16 (3D)


@dataclass(frozen=True)
class Prediction:
    """Raw network outputs for one image, by head name, each ``(C, *spatial)`` float32, plus
    any constants the network hands over for decoding (see :func:`predict_tiled`)."""

    raw: dict[str, np.ndarray]
    image_shape: tuple[int, ...]
    model: str = ""
    method: str = ""
    info: dict[str, Any] = field(default_factory=dict)


def select_device(name: str = "auto"):
    """A torch device: cuda > mps > cpu for 'auto', or exactly the one asked for.

    Asking for a device that is not available raises ``ValueError`` rather than silently
    running somewhere else.
    """
    import torch

    name = (name or "auto").lower()
    has_mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for but no CUDA GPU is available")
    if name == "mps" and not has_mps:
        raise InputError("device 'mps' was asked for but Apple MPS is not available")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise InputError(f"unknown device {name!r}; use auto, cuda, mps or cpu")
    return torch.device(name)


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class TilePlan:
    """Where the tiles go: padded image shape, tile shape, and each tile's start corner."""

    padded_shape: tuple[int, ...]
    tile_shape: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    halo: tuple[int, ...]


def plan_tiles(
    shape: tuple[int, ...], *, tile_size: int | tuple[int, ...], halo: int, multiple: int
) -> TilePlan:
    """Cover ``shape`` with tiles that overlap by ``2 * halo`` and fit the network's multiple."""
    nd = len(shape)
    tiles = (tile_size,) * nd if isinstance(tile_size, int) else tuple(tile_size)
    tile_shape, padded, starts_per_axis, halos = [], [], [], []
    for size, t in zip(shape, tiles, strict=True):
        t = _round_up(min(t, _round_up(size, multiple)), multiple)
        p = max(size, t)
        h = min(halo, max(0, (t - multiple) // 2))
        step = max(t - 2 * h, 1)
        starts = list(range(0, p - t + 1, step))
        if starts[-1] != p - t:
            starts.append(p - t)
        tile_shape.append(t)
        padded.append(p)
        starts_per_axis.append(starts)
        halos.append(h)
    return TilePlan(
        tuple(padded), tuple(tile_shape), tuple(itertools.product(*starts_per_axis)), tuple(halos)
    )


def fitted_tile(
    shape: tuple[int, ...], *, tile_max: int, halo: int, multiple: int
) -> tuple[int, ...]:
    """Tile shape that covers ``shape`` with the fewest tiles of at most ``tile_max`` per
    axis, all of one size, so that little of each tile is spent outside the image.

    A 1120-pixel block cut into 512-pixel tiles needs 3 per axis (1.9x the pixels); into
    two tiles of 592 only 1.1x.

    >>> fitted_tile((1120, 1120), tile_max=1024, halo=32, multiple=16)
    (592, 592)
    """
    out = []
    for size in shape:
        inner = max(tile_max - 2 * halo, multiple)
        n = max(1, math.ceil(max(size - 2 * halo, 1) / inner))
        out.append(
            min(
                _round_up(math.ceil((size - 2 * halo) / n) + 2 * halo, multiple),
                _round_up(size, multiple),
            )
        )
    return tuple(out)


def _blend_window(tile_shape: tuple[int, ...], halo: tuple[int, ...]) -> np.ndarray:
    window = np.ones(tile_shape, np.float32)
    for ax, (t, h) in enumerate(zip(tile_shape, halo, strict=True)):
        if h <= 0:
            continue
        # The outer half of the halo is context only (its outputs see zero padding at the tile
        # edge and are wrong for any network wider than 1x1); the window fades over the inner half.
        context = h // 2
        i = np.arange(t, dtype=np.float32) + 0.5
        ramp = np.clip((np.minimum(i, t - i) - context) / (h - context), 1e-3, 1.0)
        shape = [1] * len(tile_shape)
        shape[ax] = t
        window = window * ramp.reshape(shape)
    return window


def tta_transforms(ndim: int) -> list[tuple[int, bool, bool]]:
    """(quarter turns in the YX plane, flip Y, flip Z): 8 in 2D, 16 in 3D."""
    flips_z = (False, True) if ndim == 3 else (False,)
    return [(k, fy, fz) for fz in flips_z for fy in (False, True) for k in range(4)]


def _forward_transform(x, k: int, flip_y: bool, flip_z: bool):
    import torch

    if flip_z:
        x = torch.flip(x, dims=(-3,))
    if flip_y:
        x = torch.flip(x, dims=(-2,))
    return torch.rot90(x, k, dims=(-2, -1))


def _backward_transform(y, kind: str, k: int, flip_y: bool, flip_z: bool):
    """Bring one head's output back into the image's frame (pixels and channel meaning)."""
    import torch

    y = torch.rot90(y, -k, dims=(-2, -1))
    if flip_y:
        y = torch.flip(y, dims=(-2,))
    if flip_z:
        y = torch.flip(y, dims=(-3,))
    if kind == "vector":
        # Channels are displacements (..., dy, dx) measured in the transformed frame.
        y = y.clone()
        for _ in range(k % 4):
            dy, dx = y[:, -2].clone(), y[:, -1].clone()
            y[:, -2], y[:, -1] = dx, -dy
        if flip_y:
            y[:, -2] = -y[:, -2]
        if flip_z:
            y[:, -3] = -y[:, -3]
    elif kind == "axes" and k % 2 == 1:
        y = y.clone()
        y[:, [-2, -1]] = y[:, [-1, -2]]
    elif kind not in ("scalar", "vector", "axes"):
        raise ValueError(f"unknown head kind {kind!r}")
    return y


def _run_net(net, x, head_kinds: dict[str, str] | None, tta: bool):
    if not tta:
        return net(x)
    if not head_kinds:
        raise ValueError("this method does not support test-time augmentation")
    total: dict = {}
    transforms = tta_transforms(x.ndim - 2)
    for k, fy, fz in transforms:
        out = net(_forward_transform(x, k, fy, fz))
        for name, value in out.items():
            back = _backward_transform(value.float(), head_kinds[name], k, fy, fz)
            total[name] = back if name not in total else total[name] + back
    return {name: value / len(transforms) for name, value in total.items()}


def predict_tiled(
    net,
    image: np.ndarray,
    *,
    config: PredictConfig = PredictConfig(),
    multiple: int = 8,
    head_kinds: dict[str, str] | None = None,
) -> Job[dict[str, np.ndarray] | None]:
    """Run ``net`` over a normalised channel-first image tile by tile.

    Parameters
    ----------
    net : torch.nn.Module
        Returns a dict of head tensors ``(B, C, *spatial)`` of the input's spatial size.
    image : ndarray
        ``(C, *spatial)`` float32, already normalised.
    config : PredictConfig
    multiple : int
        Tile sizes are rounded to this (2 ** number of poolings).
    head_kinds : dict, optional
        How each head transforms (see ``Method.head_kinds``); needed for ``config.tta``.

    Yields
    ------
    Progress('predict', tiles done, tiles total)

    Returns
    -------
    dict of head name -> ``(C, *spatial)`` float32, or None when stopped. A network with a
    ``raw_constants()`` method adds what it returns: arrays that are not maps but that
    decoding needs (e.g. the weights of PatchPerPix's patch decoder), so a prediction can
    be decoded without the network.
    """
    import torch

    device = select_device(config.device)
    spatial = image.shape[1:]
    plan = plan_tiles(spatial, tile_size=config.tile_size, halo=config.halo, multiple=multiple)
    pad = [(0, 0)] + [(0, p - s) for p, s in zip(plan.padded_shape, spatial, strict=True)]
    padded = np.pad(image, pad, mode="reflect" if max(spatial) > 1 else "edge")
    window = _blend_window(plan.tile_shape, plan.halo)
    window_t = torch.from_numpy(window).to(device)
    out: dict[str, torch.Tensor] = {}
    weight = torch.zeros(plan.padded_shape, dtype=torch.float32, device=device)
    net = net.to(device).eval()
    total = len(plan.starts)
    batch = max(1, config.batch_size)
    done = 0
    with torch.inference_mode():
        for first in range(0, total, batch):
            starts = plan.starts[first : first + batch]
            slices = [
                tuple(slice(s, s + t) for s, t in zip(st, plan.tile_shape, strict=True))
                for st in starts
            ]
            x = np.stack([padded[(slice(None), *sl)] for sl in slices])
            result = _run_net(
                net, torch.from_numpy(np.ascontiguousarray(x)).to(device), head_kinds, config.tta
            )
            for name, value in result.items():
                if name not in out:
                    out[name] = torch.zeros(
                        (value.shape[1], *plan.padded_shape), dtype=torch.float32, device=device
                    )
                for k, sl in enumerate(slices):
                    out[name][(slice(None), *sl)] += value[k].float() * window_t
            for sl in slices:
                weight[sl] += window_t
            done += len(starts)
            command = yield Progress("predict", done, total)
            if stop_requested(command):
                return None
    crop = tuple(slice(0, s) for s in spatial)
    raw = {
        name: (value / weight)[(slice(None), *crop)].cpu().numpy().astype(np.float32)
        for name, value in out.items()
    }
    constants = getattr(net, "raw_constants", None)
    if constants is not None:
        raw.update(constants())
    return raw
