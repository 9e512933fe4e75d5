"""Object size: measure it, estimate it on a user's image, and run a model at its own scale.

A model learns objects of the sizes in its training data. A user's nuclei may be twice or
half that size, and then the same network fragments or merges them. Cellpose answers with a
diameter that the user sets or that is estimated; so do we:

* :func:`median_diameter` measures a set of masks: the median equivalent diameter (the
  diameter of the disc of the same area) over all objects. Every card states it for its
  training data (``object_size``).
* :func:`estimate_diameter` estimates the same number on an image without labels: objects are
  told from background by Otsu's threshold on the model's input (bright objects on dark, after
  :mod:`~napari_instseg.core.appearance`), and each connected object's largest inscribed
  disc (the maximum of its distance transform) gives a diameter; the median over objects,
  times a calibration measured on training masks, is the estimate. Touching objects that
  merge under the threshold still give the inscribed disc of their largest member, so clumps
  do not inflate it. It is scale-equivariant by construction: resize the image by f and the
  estimate follows by f.
* :func:`plan_scale` turns an estimate into the resize factor: the model works best when the
  objects have its card's ``working_diameter`` (measured on resized val images, which need not
  be the training median).
* :func:`resize_image` and :func:`labels_to_grid` resize the input and map labels back to the
  input grid, keeping every object (an object that nearest-neighbour sampling would drop
  keeps the pixel nearest its centre).

Examples
--------
>>> yy, xx = np.mgrid[:200, :200]
>>> discs = np.zeros((200, 200), np.float32)
>>> for cy, cx in [(40, 40), (40, 120), (120, 60), (150, 150)]:
...     discs[(yy - cy) ** 2 + (xx - cx) ** 2 <= 15 ** 2] = 1.0
>>> est = estimate_diameter(discs)   # discs of diameter 31; calibrated for nuclei (not discs)
>>> round(est.diameter), est.n_objects
(35, 4)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .arrays import LABEL_DTYPE, InputError

#: Factors beyond these are refused as implausible for a microscope image (a 4x change in
#: object size is already far outside what any of our models learnt).
MIN_FACTOR, MAX_FACTOR = 0.25, 4.0
#: ``diameter="auto"``: a measured scale this close (relative) to the one used is kept.
AUTO_TOLERANCE = 0.2
#: Factors within this of 1 are not worth a resize (it would only blur the image).
KEEP_NATIVE = 0.08
#: Estimated diameter per (2 x median maximum of the distance transform) of the objects,
#: measured on the train splits of dsb2018_fluo and dsb2018_stained (median of true/raw;
#: ``benchmarks/scale.py --calibrate``). Objects are not discs: the inscribed disc of an
#: ellipse is narrower than its equivalent diameter.
CALIBRATION = 1.18
#: Objects smaller than this many pixels are noise to the estimate.
MIN_OBJECT_PIXELS = 9


@dataclass(frozen=True)
class DiameterEstimate:
    """An estimated median object diameter (pixels of the image it was made on)."""

    diameter: float | None
    n_objects: int
    reason: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ScalePlan:
    """How an image is resized for a model: ``factor`` model pixels per input pixel."""

    factor: float = 1.0
    diameter: float | None = None  # the objects' diameter in input pixels (given or estimated)
    source: str = "off"  # "auto", "given" or "off"
    working_diameter: float | list[float] | None = None
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        if self.source == "off":
            return "diameter off (native scale)" + (f"; {self.note}" if self.note else "")
        d = f"{self.diameter:.1f} px" if self.diameter else "?"
        how = "estimated" if self.source == "auto" else "given"
        line = f"diameter {d} ({how}), resized x{self.factor:.2f}"
        return line + (f"; {self.note}" if self.note else "")


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameter of every object of a 2D (disc) or 3D (ball) label image."""
    labels = np.asarray(labels)
    counts = np.bincount(labels.ravel().astype(np.int64))[1:]
    counts = counts[counts > 0].astype(np.float64)
    if labels.ndim == 3:
        return (6.0 * counts / math.pi) ** (1 / 3)
    return np.sqrt(4.0 * counts / math.pi)


def median_diameter(masks) -> float | None:
    """Median equivalent diameter over all objects of the label images ``masks``."""
    sizes = [equivalent_diameters(m) for m in masks]
    sizes = np.concatenate(sizes) if sizes else np.zeros(0)
    return float(np.median(sizes)) if sizes.size else None


def _raw_inscribed(image: np.ndarray) -> tuple[float | None, int]:
    """2 x the median of the per-object maximum of the distance transform, and the count."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    x = np.asarray(image, np.float32)
    finite = x[np.isfinite(x)]
    if finite.size == 0 or float(finite.max() - finite.min()) <= 0:
        return None, 0
    sample = finite[:: max(1, finite.size // 1_000_000)]
    try:
        cut = threshold_otsu(sample)
    except ValueError:
        return None, 0
    fg = ndi.binary_opening(np.nan_to_num(x, nan=cut) > cut)
    lab, n = ndi.label(fg)
    if n == 0:
        return None, 0
    sizes = np.bincount(lab.ravel())[1:]
    dist = ndi.distance_transform_edt(fg)
    peak = ndi.maximum(dist, lab, index=np.arange(1, n + 1))
    keep = sizes >= MIN_OBJECT_PIXELS
    # an object that fills most of the image is background the threshold let through
    keep &= sizes < 0.5 * fg.size
    if not keep.any():
        return None, 0
    return 2.0 * float(np.median(np.asarray(peak)[keep])), int(keep.sum())


def estimate_diameter(image: np.ndarray) -> DiameterEstimate:
    """Estimate the median object diameter of a one-channel image with bright objects.

    Parameters
    ----------
    image : ndarray
        2D ``(Y, X)`` or channel-first ``(1, Y, X)``, as the model sees it (after the
        appearance step; normalised or not, the threshold does not care).
    """
    x = np.asarray(image)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise InputError(f"diameter estimation takes a 2D image, not shape {x.shape}")
    raw, n = _raw_inscribed(x)
    if raw is None:
        return DiameterEstimate(None, 0, "no objects stand out from the background")
    return DiameterEstimate(raw * CALIBRATION, n, f"{n} objects")


def check_diameter(value, image_shape: tuple[int, ...] | None = None):
    """``"auto"``, ``"off"`` or a positive number of pixels no larger than the image."""
    if value is None:
        return "auto"
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("auto", "off"):
            return text
        try:
            value = float(text)
        except ValueError:
            raise InputError(
                f"diameter must be 'auto', 'off' or a number of pixels, not {value!r}"
            ) from None
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InputError(f"diameter must be a positive number of pixels, not {value}")
    if image_shape is not None and value > max(image_shape):
        raise InputError(
            f"diameter {value:g} px is larger than the image ({'x'.join(map(str, image_shape))})"
        )
    return value


def plan_scale(
    diameter,
    *,
    working_diameter: float | list[float] | None,
    image_shape: tuple[int, ...] | None = None,
) -> ScalePlan:
    """The resize for ``diameter`` (pixels, or "off") and a model's working diameter (a
    number, or a ``[low, high]`` range: :func:`target_diameter`).

    ``"auto"`` is estimated by :func:`~napari_instseg.core.pipeline.segment_image`, which
    calls this with the estimate; here it only falls back to the native scale with the
    reason (a model without a working diameter, or an image it cannot estimate on: 3D).
    """
    diameter = check_diameter(diameter, image_shape)
    if diameter == "off":
        return ScalePlan(1.0, None, "off", working_diameter)
    if not working_diameter:
        note = "the model has no working diameter (the object size it segments best); native scale"
        if diameter == "auto":
            return ScalePlan(1.0, None, "off", None, note)
        return ScalePlan(1.0, float(diameter), "given", None, note)
    if diameter == "auto":
        return ScalePlan(1.0, None, "off", working_diameter, "estimation is 2D only")
    source = "given"
    factor = target_diameter(float(diameter), working_diameter) / float(diameter)
    note = ""
    if factor < MIN_FACTOR or factor > MAX_FACTOR:
        clipped = min(max(factor, MIN_FACTOR), MAX_FACTOR)
        note = f"factor {factor:.2f} limited to {clipped:.2f}"
        factor = clipped
    if abs(factor - 1.0) <= KEEP_NATIVE:
        factor = 1.0
    return ScalePlan(round(float(factor), 4), float(diameter), source, working_diameter, note)


def target_diameter(diameter: float, working) -> float:
    """The diameter a model should see objects of ``diameter`` at.

    ``working`` is the card's working diameter: a number (every image is brought to it); a
    ``[low, high]`` range (objects inside keep their size, others are brought to the nearest
    end); or ``[low, centre, high]`` (objects inside keep their size, others are brought to
    ``centre``, the size the model segments best, rather than to the edge of the range).
    A model that learnt objects of many sizes is not made to see them all at one size.
    """
    if isinstance(working, list | tuple):
        low, high = float(working[0]), float(working[-1])
        if low <= diameter <= high:
            return float(diameter)
        if len(working) == 3:
            return float(working[1])
        return min(max(diameter, low), high)
    return float(working)


def scaled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, ...]:
    return tuple(max(1, int(round(s * factor))) for s in shape)


def resize_image(image_cf: np.ndarray, factor: float) -> np.ndarray:
    """Resize the spatial axes of a channel-first image by ``factor`` (linear; area-averaged
    when shrinking, so fine texture does not alias)."""
    if factor == 1.0:
        return image_cf
    import torch
    import torch.nn.functional as F

    spatial = image_cf.shape[1:]
    out = scaled_shape(spatial, factor)
    x = torch.from_numpy(np.ascontiguousarray(image_cf, np.float32))[None]
    if factor < 1.0:
        y = F.interpolate(x, size=out, mode="area")
    else:
        mode = "bilinear" if len(spatial) == 2 else "trilinear"
        y = F.interpolate(x, size=out, mode=mode, align_corners=False)
    return y[0].numpy()


def labels_to_grid(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Labels made on a resized grid, back on a grid of ``shape`` (nearest neighbour, pixel
    centres aligned), every object kept: one that sampling misses gets the input pixel
    nearest its centre."""
    labels = np.asarray(labels)
    if labels.shape == tuple(shape):
        return labels.astype(LABEL_DTYPE, copy=False)
    idx = []
    for n_in, n_out in zip(labels.shape, shape, strict=True):
        centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        idx.append(np.clip(np.round(centres), 0, n_in - 1).astype(np.intp))
    out = labels[np.ix_(*idx)].astype(LABEL_DTYPE)
    top = int(labels.max()) if labels.size else 0
    if top == 0:
        return out
    present = np.zeros(top + 1, bool)
    present[out.ravel()] = True
    wanted = np.zeros(top + 1, bool)
    wanted[labels.ravel()] = True
    missing = np.flatnonzero(wanted & ~present)
    missing = missing[missing > 0]
    if missing.size:
        from scipy import ndimage as ndi

        centres = ndi.center_of_mass(np.ones(labels.shape), labels, missing)
        for obj, c in zip(missing, centres, strict=True):
            pos = tuple(
                int(np.clip(round((ci + 0.5) * n_out / n_in - 0.5), 0, n_out - 1))
                for ci, n_in, n_out in zip(c, labels.shape, shape, strict=True)
            )
            holder = int(out[pos])
            # take the pixel unless that would make its holder vanish in turn
            if holder == 0 or np.count_nonzero(out == holder) > 1:
                out[pos] = obj
    return out
