"""Shape and dtype conventions shared by the whole library.

Images are channel-first ``(C, *spatial)`` float32 arrays with 2 or 3 spatial axes written
``(Z, Y, X)``; labels are ``uint32`` with 0 for background.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LABEL_DTYPE = np.uint32


class InputError(ValueError):
    """An input array that cannot be used, with a message meant for the user."""


def as_labels(labels: np.ndarray) -> np.ndarray:
    """Return ``labels`` as a ``uint32`` instance image, refusing what cannot be labels."""
    labels = np.asarray(labels)
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise InputError("labels must hold whole numbers; got non-integer floats")
    elif labels.dtype.kind not in "iub":
        raise InputError(f"labels must be integers, got dtype {labels.dtype}")
    if labels.size and labels.min() < 0:
        raise InputError("labels must be non-negative (0 = background)")
    if labels.size and labels.max() > np.iinfo(LABEL_DTYPE).max:
        raise InputError("labels exceed the uint32 range")
    return labels.astype(LABEL_DTYPE, copy=False)


def spatial_labels(labels: Any, *, what: str = "labels") -> np.ndarray:
    """uint32 labels with 2 or 3 axes, with a user-facing message for anything else."""
    if labels is None:
        raise InputError(f"no {what} given")
    arr = np.asarray(labels)
    if arr.ndim not in (2, 3):
        raise InputError(f"{what} must be 2D (Y, X) or 3D (Z, Y, X); got shape {tuple(arr.shape)}")
    if arr.size == 0:
        raise InputError(f"{what} are empty (shape {tuple(arr.shape)})")
    return as_labels(arr)


def relabel_consecutive(labels: np.ndarray) -> np.ndarray:
    """Renumber the objects of ``labels`` to 1..N in order of first id, keeping 0 as background."""
    labels = np.asarray(labels)
    top = int(labels.max()) if labels.size else 0
    if labels.size and labels.min() >= 0 and top <= 4 * labels.size + 1024:
        # a lookup table over the id range: linear time, no sort
        present = np.bincount(labels.ravel(), minlength=top + 1) > 0
        present[0] = False
        return np.cumsum(present).astype(LABEL_DTYPE)[labels]
    ids, inverse = np.unique(labels, return_inverse=True)
    if ids.size and ids[0] == 0:
        new = np.arange(ids.size, dtype=LABEL_DTYPE)
    else:
        new = np.arange(1, ids.size + 1, dtype=LABEL_DTYPE)
    return new[inverse.reshape(labels.shape)]


def as_channel_first(
    image: np.ndarray, *, ndim: int, channel_axis: int | None = None
) -> np.ndarray:
    """Bring ``image`` into ``(C, *spatial)`` float32 layout with ``ndim`` spatial axes.

    Parameters
    ----------
    image : ndarray
        A single-channel image with ``ndim`` axes, or a multi-channel one whose channel axis is
        given by ``channel_axis``.
    ndim : int
        Number of spatial axes expected (2 or 3).
    channel_axis : int, optional
        Axis of ``image`` that holds channels. ``None`` means the image has no channel axis.

    Raises
    ------
    InputError
        For the wrong number of axes, an empty image, or non-finite values.
    """
    image = np.asarray(image)
    if ndim not in (2, 3):
        raise InputError(f"only 2D and 3D images are supported, not {ndim}D")
    if image.dtype.kind not in "uifb":
        raise InputError(f"image dtype {image.dtype} is not numeric")
    if channel_axis is None:
        if image.ndim != ndim:
            raise InputError(
                f"expected a {ndim}D image, got an array of shape {image.shape}; "
                "choose a channel or time axis for the extra dimension"
            )
        image = image[None]
    else:
        if image.ndim != ndim + 1:
            raise InputError(
                f"expected {ndim} spatial axes plus a channel axis, got shape {image.shape}"
            )
        image = np.moveaxis(image, channel_axis, 0)
    if image.size == 0 or min(image.shape[1:]) == 0:
        raise InputError(f"the image is empty (shape {image.shape[1:]})")
    image = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(image)):
        raise InputError("the image contains NaN or infinite values; fill or mask them first")
    return image


def spatial_ndim(image_cf: np.ndarray) -> int:
    """Number of spatial axes of a channel-first array."""
    return image_cf.ndim - 1


def face_neighbours(ndim: int):
    """For every axis, the slices ``(lo, hi)`` that pair each pixel with its next neighbour
    along that axis: ``a[lo]`` and ``a[hi]`` are face-adjacent pixel pairs."""
    for axis in range(ndim):
        lo = [slice(None)] * ndim
        hi = [slice(None)] * ndim
        lo[axis] = slice(None, -1)
        hi[axis] = slice(1, None)
        yield tuple(lo), tuple(hi)


def adjacent_pairs(labels: np.ndarray):
    """``(a, b, count)``: face-adjacent pairs of different non-zero ids, ``a < b``, and the
    number of pixel faces they share."""
    a_parts, b_parts = [], []
    for lo_slice, hi_slice in face_neighbours(labels.ndim):
        lo, hi = labels[lo_slice], labels[hi_slice]
        touch = (lo != hi) & (lo > 0) & (hi > 0)
        x, y = lo[touch], hi[touch]
        a_parts.append(np.minimum(x, y))
        b_parts.append(np.maximum(x, y))
    a = np.concatenate(a_parts).astype(np.int64)
    b = np.concatenate(b_parts).astype(np.int64)
    if a.size == 0:
        return a, b, np.zeros(0, np.int64)
    top = int(b.max()) + 1
    pairs, counts = np.unique(a * top + b, return_counts=True)
    return pairs // top, pairs % top, counts
