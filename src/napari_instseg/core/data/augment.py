"""Random crops, flips, 90-degree rotations and intensity jitter for training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations to apply during training."""

    flips: bool = True
    rot90: bool = True
    intensity_scale: float = 0.2
    intensity_shift: float = 0.1
    foreground_crop_prob: float = 0.7


def _pad_to(arr: np.ndarray, size: tuple[int, ...], value) -> np.ndarray:
    spatial = arr.shape[-len(size) :]
    pad = [(0, max(0, s - a)) for a, s in zip(spatial, size, strict=True)]
    if not any(p[1] for p in pad):
        return arr
    pad = [(0, 0)] * (arr.ndim - len(size)) + pad
    return np.pad(arr, pad, mode="constant", constant_values=value)


def random_crop(
    image: np.ndarray,
    labels: np.ndarray,
    known: np.ndarray,
    size: tuple[int, ...],
    *,
    rng: np.random.Generator,
    foreground_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop the same random window from image ``(C, *spatial)``, labels and known mask.

    Smaller inputs are padded (padding is unknown, so losses ignore it). With probability
    ``foreground_prob`` the window is centred near a random known object pixel.
    """
    image = _pad_to(image, size, 0.0)
    labels = _pad_to(labels, size, 0)
    known = _pad_to(known, size, False)
    spatial = labels.shape
    starts = None
    if foreground_prob > 0 and rng.random() < foreground_prob:
        fg = np.flatnonzero((labels > 0) & known)
        if fg.size:
            centre = np.unravel_index(fg[rng.integers(fg.size)], spatial)
            starts = [
                int(np.clip(c - s // 2 + rng.integers(-s // 4, s // 4 + 1), 0, a - s))
                for c, s, a in zip(centre, size, spatial, strict=True)
            ]
    if starts is None:
        starts = [int(rng.integers(0, a - s + 1)) for a, s in zip(spatial, size, strict=True)]
    window = tuple(slice(st, st + s) for st, s in zip(starts, size, strict=True))
    return image[(slice(None), *window)], labels[window], known[window]


def augment_sample(
    image: np.ndarray,
    labels: np.ndarray,
    known: np.ndarray,
    *,
    config: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply random flips, in-plane 90-degree rotations and intensity jitter.

    Geometry changes are applied identically to image, labels and known mask; rotations act on
    the last two (Y, X) axes so they also fit anisotropic 3D stacks.
    """
    nd = labels.ndim
    if config.flips:
        for ax in range(nd):
            if rng.random() < 0.5:
                image = np.flip(image, axis=ax + 1)
                labels = np.flip(labels, axis=ax)
                known = np.flip(known, axis=ax)
    if config.rot90 and labels.shape[-1] == labels.shape[-2]:
        k = int(rng.integers(4))
        image = np.rot90(image, k, axes=(-2, -1))
        labels = np.rot90(labels, k, axes=(-2, -1))
        known = np.rot90(known, k, axes=(-2, -1))
    image = np.ascontiguousarray(image, dtype=np.float32)
    if config.intensity_scale or config.intensity_shift:
        scale = 1 + rng.uniform(-config.intensity_scale, config.intensity_scale)
        shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
        image = image * np.float32(scale) + np.float32(shift)
    return image, np.ascontiguousarray(labels), np.ascontiguousarray(known)
