"""Random crops (optionally rescaled), flips, 90-degree rotations and intensity jitter (scale,
shift, gamma, blur, noise, inversion) for training.

The defaults are what the single-dataset models were trained with; a generalist model turns
on the rest (``recipes/generalist_nuclei.sh``) so that it meets objects of other sizes and
images of other contrast than its training data.
"""

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
    #: Rescale crops by a factor drawn log-uniformly from [1 / zoom, zoom] (1 = off; 2D).
    zoom: float = 1.0
    #: Gamma drawn log-uniformly from [1 / gamma, gamma] on the crop rescaled to [0, 1].
    gamma: float = 1.0
    #: Probability of a Gaussian blur with sigma drawn uniformly from (0, blur_sigma].
    blur_prob: float = 0.0
    blur_sigma: float = 1.5
    #: Gaussian noise with a standard deviation drawn uniformly from [0, noise] (image units).
    noise: float = 0.0
    #: Probability of turning the crop's intensities upside down.
    invert_prob: float = 0.0


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
    zoom: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop the same random window from image ``(C, *spatial)``, labels and known mask.

    Smaller inputs are padded (padding is unknown, so losses ignore it). With probability
    ``foreground_prob`` the window is centred near a random known object pixel. With
    ``zoom`` > 1 (2D) a window of ``size / f`` is cut and resized to ``size``, ``f`` drawn
    log-uniformly from [1 / zoom, zoom]: objects appear up to ``zoom`` times larger or smaller.
    """
    if zoom > 1.0 and labels.ndim == 2:
        f = float(np.exp(rng.uniform(-np.log(zoom), np.log(zoom))))
        window = tuple(max(8, int(round(s / f))) for s in size)
        img, lab, kn = random_crop(
            image, labels, known, window, rng=rng, foreground_prob=foreground_prob
        )
        return _resize_crop(img, lab, kn, size)
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


def _resize_crop(image, labels, known, size):
    """Resize a crop to ``size``: the image linearly, labels and known mask by nearest
    neighbour (pixel centres aligned)."""
    from scipy import ndimage as ndi

    if labels.shape == tuple(size):
        return image, labels, known
    zoom = [s / a for s, a in zip(size, labels.shape, strict=True)]
    img = np.stack(
        [ndi.zoom(c, zoom, order=1, grid_mode=True, mode="grid-constant") for c in image]
    )
    idx = [
        np.clip(((np.arange(s) + 0.5) * a / s).astype(np.intp), 0, a - 1)
        for s, a in zip(size, labels.shape, strict=True)
    ]
    grid = np.ix_(*idx)
    return img.astype(np.float32), labels[grid], known[grid]


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
    image = _appearance_jitter(image, config, rng)
    if config.intensity_scale or config.intensity_shift:
        scale = 1 + rng.uniform(-config.intensity_scale, config.intensity_scale)
        shift = rng.uniform(-config.intensity_shift, config.intensity_shift)
        image = image * np.float32(scale) + np.float32(shift)
    return image, np.ascontiguousarray(labels), np.ascontiguousarray(known)


def _appearance_jitter(image: np.ndarray, config: AugmentConfig, rng) -> np.ndarray:
    """Gamma, blur, noise and inversion (each off at its default)."""
    if config.invert_prob and rng.random() < config.invert_prob:
        lo, hi = float(image.min()), float(image.max())
        image = (hi + lo) - image
    if config.gamma > 1.0:
        g = float(np.exp(rng.uniform(-np.log(config.gamma), np.log(config.gamma))))
        lo, hi = float(image.min()), float(image.max())
        span = max(hi - lo, 1e-6)
        image = (np.clip((image - lo) / span, 0, 1) ** g * span + lo).astype(np.float32)
    if config.blur_prob and rng.random() < config.blur_prob:
        from scipy import ndimage as ndi

        sigma = float(rng.uniform(0.0, config.blur_sigma)) or 1e-3
        axes = tuple(range(1, image.ndim))
        image = ndi.gaussian_filter(image, sigma, axes=axes).astype(np.float32)
    if config.noise:
        sd = float(rng.uniform(0.0, config.noise))
        image = (image + rng.normal(0.0, sd, image.shape)).astype(np.float32)
    return image
