"""Images read block by block: TIFF, zarr v2/v3, OME-Zarr, or a staged in-memory array.

A :class:`SourceSpec` says how to open an image (a path and where the array is inside it),
so it travels to workers instead of pixels. :func:`global_stats` takes the normalisation
percentiles once for the whole image, from a pyramid level or a strided sample, never per
block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..arrays import InputError

#: Largest number of pixels (per channel) the normalisation statistics are taken from.
SAMPLE_PIXELS = 4_000_000


@dataclass(frozen=True)
class SourceSpec:
    """How to open an image lazily.

    ``kind`` is ``"tiff"`` or ``"zarr"``; ``key`` is the array's path inside a zarr group
    (an OME-Zarr's level 0); ``channel_axis`` is the axis of the stored array that holds
    channels (None: single channel).
    """

    path: str
    kind: str
    key: str = ""
    channel_axis: int | None = None
    levels: tuple[str, ...] = ()  # OME-Zarr pyramid level keys, full resolution first


class LazyImage:
    """An opened image: its shape, and channel-first float32 regions on demand."""

    def __init__(self, spec: SourceSpec):
        self.spec = spec
        self.array = _open_array(spec, spec.key)
        nd = self.array.ndim - (spec.channel_axis is not None)
        if nd not in (2, 3):
            raise InputError(
                f"{spec.path}: expected 2 or 3 spatial axes (plus an optional channel axis), "
                f"got shape {tuple(self.array.shape)}"
                + ("" if spec.channel_axis is not None else "; give the channel axis")
            )
        if self.array.dtype.kind not in "uifb":
            raise InputError(f"{spec.path}: image dtype {self.array.dtype} is not numeric")
        ca = spec.channel_axis
        self.channels = 1 if ca is None else int(self.array.shape[ca])
        self.spatial_shape = tuple(int(s) for i, s in enumerate(self.array.shape) if i != ca)
        if min(self.spatial_shape) == 0:
            raise InputError(f"{spec.path}: the image is empty (shape {self.spatial_shape})")

    @property
    def ndim(self) -> int:
        return len(self.spatial_shape)

    def read(self, region: tuple[slice, ...], *, raw: bool = False) -> np.ndarray:
        """``(C, *region)`` float32 from the stored array (intensities as stored; with
        ``raw`` in the stored dtype)."""
        ca = self.spec.channel_axis
        index = list(region)
        if ca is not None:
            index.insert(ca, slice(None))
        data = np.asarray(self.array[tuple(index)])
        data = data[None] if ca is None else np.moveaxis(data, ca, 0)
        return data if raw else data.astype(np.float32, copy=False)

    def sample(self, max_pixels: int = SAMPLE_PIXELS) -> np.ndarray:
        """A strided ``(C, *spatial)`` copy of at most about ``max_pixels`` pixels per channel.

        Uses the first OME-Zarr pyramid level that is small enough when there is one;
        otherwise reads the full-resolution image slab by slab (bounded memory) keeping every
        ``k``-th pixel along Y and X.
        """
        for key in self.spec.levels[1:]:
            level = LazyImage(SourceSpec(self.spec.path, "zarr", key, self.spec.channel_axis))
            if math.prod(level.spatial_shape) <= max_pixels:
                return level.read(tuple(slice(0, s) for s in level.spatial_shape))
        total = math.prod(self.spatial_shape)
        step = max(1, math.ceil(math.sqrt(total / max_pixels)))
        lead = self.spatial_shape[:-2]
        y_size, x_size = self.spatial_shape[-2:]
        rows = max(step, (64 // step) * step)  # slabs of whole strides
        parts = []
        for y0 in range(0, y_size, rows):
            region = tuple(slice(0, s) for s in lead) + (
                slice(y0, min(y0 + rows, y_size)),
                slice(0, x_size),
            )
            parts.append(self.read(region)[..., ::step, ::step])
        return np.concatenate(parts, axis=-2)


def _open_array(spec: SourceSpec, key: str):
    import zarr

    path = Path(spec.path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    try:
        if spec.kind == "tiff":
            import tifffile

            return zarr.open(tifffile.imread(path, aszarr=True), mode="r")
        node = zarr.open(str(path), mode="r")
        return node[key] if key else node
    except InputError:
        raise
    except Exception as err:  # tifffile and zarr raise many kinds of errors for bad files
        raise InputError(f"cannot open {path} lazily: {err}") from err


def open_source(path: str | Path, *, channel_axis: int | None = None) -> LazyImage:
    """Open a TIFF, a zarr array (v2 or v3) or an OME-Zarr image (level 0) lazily.

    An OME-Zarr image's own channel axis is used when it has one. Otherwise a 3-axis
    array whose last axis holds 3 or 4 values (an RGB(A) TIFF) is a colour image with that
    channel axis, as :func:`~napari_instseg.core.appearance.split_colour` reads it.
    """
    import zarr

    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return _colour_last(LazyImage(SourceSpec(str(path), "tiff", "", channel_axis)))
    if suffix != ".zarr":
        raise InputError(f"unsupported image format {suffix!r} for {path}; use .tif or .zarr")
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise InputError(f"cannot open {path} as zarr: {err}") from err
    if isinstance(node, zarr.Array):
        return _colour_last(LazyImage(SourceSpec(str(path), "zarr", "", channel_axis)))
    from ..io.ome_zarr import is_ome_zarr, open_ome_zarr

    if is_ome_zarr(path):
        ome = open_ome_zarr(path)
        ms = dict(node.attrs).get("ome", dict(node.attrs))["multiscales"][0]
        keys = tuple(d["path"] for d in ms["datasets"])
        ca = ome.channel_axis if ome.channel_axis is not None else channel_axis
        return LazyImage(SourceSpec(str(path), "zarr", keys[0], ca, keys))
    first = next(iter(node.array_keys()), None)
    if first is None:
        raise InputError(f"{path} is a zarr group with no arrays")
    return _colour_last(LazyImage(SourceSpec(str(path), "zarr", first, channel_axis)))


def _colour_last(image: LazyImage) -> LazyImage:
    """``image`` read as colour when it has no channel axis and is ``(Y, X, 3 or 4)``."""
    shape = image.array.shape
    if image.spec.channel_axis is None and len(shape) == 3 and shape[-1] in (3, 4):
        return LazyImage(replace(image.spec, channel_axis=2))
    return image


def stage_array(
    data, path: str | Path, *, channel_axis: int | None = None, chunk: int = 512
) -> LazyImage:
    """Write an in-memory or dask-backed array (e.g. a napari layer's data) to a zarr v3
    array slab by slab, so workers on other processes can read it; returns it opened."""
    import zarr

    shape = tuple(int(s) for s in data.shape)
    chunks = tuple(
        1 if i == channel_axis else min(s, chunk if len(shape) - i <= 2 else 32)
        for i, s in enumerate(shape)
    )
    arr = zarr.create_array(
        store=str(path),
        shape=shape,
        dtype=np.dtype(data.dtype),
        chunks=chunks,
        zarr_format=3,
        overwrite=True,
    )
    axis = next(i for i in range(len(shape)) if i != channel_axis)
    step = chunks[axis]
    for start in range(0, shape[axis], step):
        index = [slice(None)] * len(shape)
        index[axis] = slice(start, min(start + step, shape[axis]))
        arr[tuple(index)] = np.asarray(data[tuple(index)])
    return _colour_last(LazyImage(SourceSpec(str(path), "zarr", "", channel_axis)))


def global_sample(image: LazyImage, max_pixels: int = SAMPLE_PIXELS) -> np.ndarray:
    """The whole image's strided sample (:meth:`LazyImage.sample`), refused when it holds
    NaN or infinite values."""
    sample = image.sample(max_pixels)
    if not np.all(np.isfinite(sample)):
        raise InputError(
            f"{image.spec.path} contains NaN or infinite values; fill or mask them first"
        )
    return sample


def channel_percentiles(
    values: np.ndarray, *, low: float = 1.0, high: float = 99.8
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``low``/``high`` percentiles of a channel-first array."""
    flat = values.reshape(values.shape[0], -1)
    lo, hi = np.percentile(flat, [low, high], axis=1)
    return lo.astype(np.float64), hi.astype(np.float64)


def global_stats(
    image: LazyImage, *, low: float = 1.0, high: float = 99.8, max_pixels: int = SAMPLE_PIXELS
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel ``low``/``high`` percentiles of the whole image, and the sample they came
    from (``(C, *spatial)``, also used to detect the modality once for every block)."""
    sample = global_sample(image, max_pixels)
    lo, hi = channel_percentiles(sample, low=low, high=high)
    return lo, hi, sample


def source_for(data, file: str | None, staging: str | Path, *, channel_axis: int | None = None):
    """How workers read an image that is open in memory (e.g. a napari layer's ``data``):
    ``file`` itself when it is a TIFF or zarr holding exactly ``data``'s array, else a copy
    staged slab by slab at ``staging``.

    Returns
    -------
    (LazyImage, staged path or None)
    """
    if file and Path(file).suffix.lower() in (".tif", ".tiff", ".zarr"):
        try:
            opened = open_source(file, channel_axis=channel_axis)
        except InputError:
            opened = None
        if opened is not None and tuple(opened.array.shape) == tuple(data.shape):
            return opened, None
    return stage_array(data, staging, channel_axis=channel_axis), Path(staging)
