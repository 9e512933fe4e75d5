"""OME-Zarr (NGFF 0.5, zarr format 3): an image pyramid with its label pyramids, and reading
them back (0.5, or 0.4).

Layout: the image pyramid at ``0``, ``1``, ... with ``multiscales`` under the ``"ome"``
attribute key; a ``labels`` group listing the label images; each ``labels/<name>`` a pyramid
of the same levels with ``image-label`` metadata pointing back at ``../../``, and what made
the labels under :data:`~napari_instseg.core.io.provenance.ATTRS_KEY`. The metadata builders
(:func:`ome_axes_and_scales`, :func:`image_attrs`, :func:`label_image_attrs`,
:func:`labels_group_attrs`) and the pyramid steps (:func:`halve_mean`, :func:`halve_stride`)
are public: the blockwise engine writes the same layout block by block.

Examples
--------
>>> write_ome_zarr("cells.ome.zarr", image, labels, image_name="cells")  # doctest: +SKIP
>>> image, labels, metadata = read_ome_zarr("cells.ome.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import InputError, spatial_labels
from .provenance import ATTRS_KEY, jsonable
from .staging import is_zarr_store, safe_name, staged_output
from .zarr import SPATIAL_NAMES, chunks, compressor

#: The OME-Zarr (NGFF) version written; zarr format 3 with metadata under ``"ome"``.
OME_VERSION = "0.5"
_MIN_PYRAMID_SIDE = 256
#: Axis types by name, for OME-Zarr 0.3 files whose axes are bare names.
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def default_levels(spatial_shape: tuple[int, ...]) -> int:
    """Pyramid levels for an image: halve Y and X while every level keeps both >= 256.

    Images with a Y or X side under 512 get a single level; 2048 x 2048 gets four
    (2048, 1024, 512, 256).
    """
    side = min(spatial_shape[-2:])
    levels = 1
    while side >= 2 * _MIN_PYRAMID_SIDE:
        side = math.ceil(side / 2)
        levels += 1
    return levels


def halve_mean(image: np.ndarray) -> np.ndarray:
    """2x2 block mean over the last two axes (Y, X); odd sides are padded by their edge."""
    pad = [(0, 0)] * image.ndim
    for ax in (-2, -1):
        if image.shape[ax] % 2:
            pad[ax] = (0, 1)
    if any(p != (0, 0) for p in pad):
        image = np.pad(image, pad, mode="edge")
    wide = image.dtype.itemsize > 2 or image.dtype.kind == "f" and image.dtype.itemsize > 4
    work = image.astype(np.float64 if wide else np.float32, copy=False)
    y, x = image.shape[-2:]
    blocks = work.reshape(*image.shape[:-2], y // 2, 2, x // 2, 2).mean(axis=(-3, -1))
    if image.dtype.kind in "iu":
        return np.rint(blocks).astype(image.dtype)
    return blocks.astype(image.dtype, copy=False)


def halve_stride(labels: np.ndarray) -> np.ndarray:
    """Every other pixel over Y and X (nearest neighbour): labels keep their ids."""
    return labels[..., ::2, ::2]


def _multiscales(
    name: str, axes: list[dict], scales: list[list[float]], kind: str, how: str
) -> list[dict]:
    """One multiscales entry; a block-mean level also gets the translation of its pixel
    centres (pixel 0 of level k averages pixels 0 .. 2^k - 1 of level 0: its centre lies
    (2^k - 1) / 2 level-0 pixels in), a strided level ("nearest") none: its pixel 0 *is*
    level 0's pixel 0."""

    def transforms(scale: list[float]) -> list[dict]:
        out = [{"type": "scale", "scale": scale}]
        if kind == "mean" and scale != scales[0]:
            shift = [round((s - s0) / 2, 12) for s, s0 in zip(scale, scales[0], strict=True)]
            out.append({"type": "translation", "translation": shift})
        return out

    return [
        {
            "name": name,
            "axes": axes,
            "datasets": [
                {"path": str(level), "coordinateTransformations": transforms(scale)}
                for level, scale in enumerate(scales)
            ],
            "type": kind,
            "metadata": {"description": how, "method": f"{__name__}.write_ome_zarr"},
        }
    ]


def ome_axes_and_scales(
    spacing: tuple[float, ...], *, has_channel: bool, levels: int
) -> tuple[list[dict], list[list[float]]]:
    """OME-Zarr axes (``c`` first when there is a channel axis) and the scale of each
    pyramid level: Y and X halve per level, Z keeps its spacing."""
    n_spatial = len(spacing)
    axes = [{"name": "c", "type": "channel"}] if has_channel else []
    axes += [{"name": n, "type": "space"} for n in SPATIAL_NAMES[-n_spatial:]]
    scales = []
    for level in range(levels):
        factor = [1.0] * (n_spatial - 2) + [2.0**level] * 2
        spatial = [round(s * f, 12) for s, f in zip(spacing, factor, strict=True)]
        scales.append([1.0] * has_channel + spatial)
    return axes, scales


def image_attrs(name: str, axes: list[dict], scales: list[list[float]]) -> dict:
    """Root attributes of an OME-Zarr 0.5 image pyramid (2x2 block means per level)."""
    return {
        "ome": {
            "version": OME_VERSION,
            "multiscales": _multiscales(
                name, axes, scales, "mean", "2x2 block mean over y and x per level"
            ),
        }
    }


def label_image_attrs(
    key: str, axes: list[dict], scales: list[list[float]], ours: Mapping[str, Any]
) -> dict:
    """Attributes of an OME-Zarr 0.5 label image ``labels/<key>`` (every other pixel per
    level), with our own metadata under :data:`ATTRS_KEY`."""
    return {
        "ome": {
            "version": OME_VERSION,
            "multiscales": _multiscales(
                key, axes, scales, "nearest", "every other pixel over y and x"
            ),
            "image-label": {
                "version": OME_VERSION,
                "colors": [{"label-value": 0, "rgba": [0, 0, 0, 0]}],
                "source": {"image": "../../"},
            },
        },
        ATTRS_KEY: jsonable(dict(ours)),
    }


def labels_group_attrs(names: list[str]) -> dict:
    """Attributes of the ``labels`` group that lists the label images ``names``."""
    return {"ome": {"version": OME_VERSION, "labels": list(names)}}


def write_ome_zarr(
    path: str | Path,
    image: np.ndarray | None,
    labels: np.ndarray | Mapping[str, np.ndarray],
    *,
    image_name: str,
    labels_name: str = "labels",
    channel_axis: int | None = None,
    attrs: Mapping[str, Any] | None = None,
    spacing: tuple[float, ...] | None = None,
    levels: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write an image with its labels as OME-Zarr 0.5 (zarr format 3).

    Layout: the image pyramid at ``0``, ``1``, ... with ``multiscales`` under the ``"ome"``
    attribute key; a ``labels`` group listing the label images; each ``labels/<name>`` a
    pyramid of the same levels with ``image-label`` metadata pointing back at ``../../``.
    The image is downsampled by 2x2 block mean over Y and X (Z is kept: stacks are usually
    thin and anisotropic), the labels by taking every other pixel, so the levels align
    exactly. When the image has a channel axis it is stored first (``c, [z,] y, x``) and the
    labels get a channel axis of size 1, as the specification asks.

    Parameters
    ----------
    path : str or Path
        Target folder, usually ``NAME.ome.zarr``.
    image : ndarray
        ``(Y, X)`` or ``(Z, Y, X)``, or with one more axis that holds channels (see
        ``channel_axis``).
    labels : ndarray or mapping of str to ndarray
        Labels with the image's spatial shape, or several of them by name.
    image_name : str
        Name of the image (``multiscales`` name).
    labels_name : str
        Name of the label image when ``labels`` is a single array.
    channel_axis : int, optional
        Axis of ``image`` that holds channels; ``None`` for a single-channel image.
    attrs : mapping, optional
        Our metadata (model, knobs, ...) stored with each label image under
        :data:`ATTRS_KEY`; for several labels a mapping from label name to its metadata.
    spacing : tuple of float, optional
        Pixel size per spatial axis at full resolution (default 1).
    levels : int, optional
        Pyramid levels; default :func:`default_levels`.
    overwrite : bool
        Replace an existing OME-Zarr (never a folder that is not a zarr store).

    Returns
    -------
    Path
        The written folder.

    Raises
    ------
    InputError
        Missing image, a shape mismatch between image and labels, bad dims or levels.
    """
    import zarr

    if image is None:
        raise InputError("OME-Zarr export needs the image the labels belong to")
    image = np.asarray(image)
    if image.dtype.kind == "b":
        image = image.astype(np.uint8)
    if image.dtype.kind not in "uif":
        raise InputError(f"image dtype {image.dtype} cannot be stored in OME-Zarr")
    n_spatial = image.ndim - (channel_axis is not None)
    if n_spatial not in (2, 3):
        raise InputError(
            f"the image must have 2 or 3 spatial axes (plus an optional channel axis); got "
            f"shape {tuple(image.shape)} with channel_axis={channel_axis}"
        )
    if channel_axis is not None:
        image = np.moveaxis(image, channel_axis, 0)
    spatial_shape = tuple(image.shape[-n_spatial:])
    if 0 in image.shape:
        raise InputError(f"the image is empty (shape {tuple(image.shape)})")

    named = dict(labels) if isinstance(labels, Mapping) else {labels_name: labels}
    if not named:
        raise InputError("no labels to write")
    attrs_by_name = (
        {k: dict(attrs.get(k) or {}) for k in named}
        if isinstance(labels, Mapping) and attrs is not None
        else {k: dict(attrs or {}) for k in named}
    )
    label_arrays: dict[str, np.ndarray] = {}
    label_attrs: dict[str, dict] = {}
    for name, lab in named.items():
        arr = spatial_labels(lab, what=f"labels {name!r}")
        if arr.shape != spatial_shape:
            raise InputError(
                f"labels {name!r} have shape {arr.shape} but the image's spatial shape is "
                f"{spatial_shape}; export labels together with the image they were made from"
            )
        key = safe_name(name)
        if key in label_arrays:
            raise InputError(f"two label images would both be stored as {key!r}")
        label_arrays[key] = arr
        label_attrs[key] = jsonable(attrs_by_name[name])

    n_levels = default_levels(spatial_shape) if levels is None else int(levels)
    if n_levels < 1:
        raise InputError(f"levels must be at least 1, got {levels}")
    if spacing is None:
        spacing = (1.0,) * n_spatial
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != n_spatial or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise InputError(f"spacing needs {n_spatial} positive numbers, got {spacing}")

    has_channel = channel_axis is not None
    axes, scales = ome_axes_and_scales(spacing, has_channel=has_channel, levels=n_levels)
    names = [a["name"] for a in axes]
    lead = 1 if has_channel else 0

    def store(group, key, data):
        arr = group.create_array(
            key,
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks(data.shape, leading=lead),
            compressors=[compressor()],
            fill_value=0,
            dimension_names=names,
        )
        arr[...] = data

    with staged_output(path, overwrite=overwrite, folder=True) as staged:
        root = zarr.open_group(str(staged), mode="w", zarr_format=3)
        root.attrs.update(image_attrs(str(image_name), axes, scales))
        level_image = image
        for level in range(n_levels):
            if level:
                level_image = halve_mean(level_image)
            store(root, str(level), level_image)
        labels_group = root.create_group("labels")
        labels_group.attrs.update(labels_group_attrs(list(label_arrays)))
        for key, arr in label_arrays.items():
            group = labels_group.create_group(key)
            group.attrs.update(label_image_attrs(key, axes, scales, label_attrs[key]))
            level_labels = arr[None] if has_channel else arr
            for level in range(n_levels):
                if level:
                    level_labels = halve_stride(level_labels)
                store(group, str(level), np.ascontiguousarray(level_labels))
    return Path(path)


@dataclass(frozen=True)
class OmeZarrImage:
    """An opened OME-Zarr image: lazy zarr arrays per pyramid level, and its metadata.

    Label pyramids are stored with the image's axes (a channel axis of size 1 included);
    :meth:`labels_level` drops that channel axis.
    """

    path: Path
    name: str
    axes: tuple[dict, ...]
    channel_axis: int | None
    image_levels: tuple[Any, ...]
    labels_levels: dict[str, tuple[Any, ...]]
    labels_attrs: dict[str, dict]
    scales: tuple[tuple[float, ...], ...]  # per level, for every axis but the channel axis
    version: str

    def labels_level(self, name: str, level: int = 0) -> np.ndarray:
        """Labels ``name`` at ``level`` as a numpy array with the image's spatial shape."""
        data = np.asarray(self.labels_levels[name][level][...])
        if self.channel_axis is not None and data.ndim == len(self.axes):
            data = np.take(data, 0, axis=self.channel_axis)
        return data


def _ome_attrs(node) -> dict:
    """OME metadata of a zarr node: under ``"ome"`` (0.5) or at the top (0.4)."""
    attrs = dict(node.attrs)
    return dict(attrs.get("ome", attrs))


def is_ome_zarr(path: str | Path) -> bool:
    """Whether ``path`` is a zarr group with OME ``multiscales`` metadata."""
    import zarr

    path = Path(path)
    if not path.is_dir() or not is_zarr_store(path):
        return False
    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # zarr raises many kinds of errors for foreign folders
        return False
    return isinstance(node, zarr.Group) and bool(_ome_attrs(node).get("multiscales"))


def open_ome_zarr(path: str | Path) -> OmeZarrImage:
    """Open an OME-Zarr image (0.5, or 0.4) lazily, with its label images.

    Raises
    ------
    InputError
        When ``path`` is not an OME-Zarr image.
    """
    import zarr

    path = Path(path)
    if not is_ome_zarr(path):
        raise InputError(f"{path} is not an OME-Zarr image (no multiscales metadata)")
    root = zarr.open_group(str(path), mode="r")
    ome = _ome_attrs(root)
    ms = ome["multiscales"][0]
    datasets = ms["datasets"]
    image_levels = tuple(root[d["path"]] for d in datasets)
    axes = ms.get("axes") or [{"name": n} for n in "tczyx"[-image_levels[0].ndim :]]
    axes = tuple(a if isinstance(a, dict) else {"name": str(a)} for a in axes)
    types = [a.get("type") or _AXIS_TYPES.get(a.get("name", "")) for a in axes]
    channel_axis = types.index("channel") if "channel" in types else None
    kept = [i for i in range(len(axes)) if i != channel_axis]

    def level_scale(dataset) -> tuple[float, ...]:
        for t in dataset.get("coordinateTransformations", []):
            if t.get("type") == "scale" and "scale" in t:
                return tuple(float(t["scale"][i]) for i in kept)
        return (1.0,) * len(kept)

    labels_levels: dict[str, tuple] = {}
    labels_attrs: dict[str, dict] = {}
    if "labels" in root and isinstance(root["labels"], zarr.Group):
        group = root["labels"]
        for name in _ome_attrs(group).get("labels", []):
            if name not in group:
                continue
            node = group[name]
            lms = _ome_attrs(node).get("multiscales") or []
            if not lms:
                continue
            labels_levels[name] = tuple(node[d["path"]] for d in lms[0]["datasets"])
            labels_attrs[name] = dict(node.attrs.get(ATTRS_KEY, {}))
    return OmeZarrImage(
        path=path,
        name=str(ms.get("name") or path.name.split(".")[0]),
        axes=axes,
        channel_axis=channel_axis,
        image_levels=image_levels,
        labels_levels=labels_levels,
        labels_attrs=labels_attrs,
        scales=tuple(level_scale(d) for d in datasets),
        version=str(ome.get("version", ms.get("version", ""))),
    )


def read_ome_zarr(path: str | Path) -> tuple[np.ndarray, dict[str, np.ndarray], dict[str, Any]]:
    """Read an OME-Zarr image at full resolution with its labels.

    Returns
    -------
    image : ndarray
        Level 0 as stored (channel axis first when there is one).
    labels : dict of str to ndarray
        Each label image at level 0, with the image's spatial shape.
    metadata : dict
        ``name``, ``axes``, ``channel_axis``, ``spacing`` (level 0), ``levels``, ``version``
        and ``labels_attrs`` (our metadata per label image).
    """
    ome = open_ome_zarr(path)
    image = np.asarray(ome.image_levels[0][...])
    labels = {name: ome.labels_level(name, 0) for name in ome.labels_levels}
    metadata = {
        "name": ome.name,
        "axes": [dict(a) for a in ome.axes],
        "channel_axis": ome.channel_axis,
        "spacing": ome.scales[0],
        "levels": len(ome.image_levels),
        "version": ome.version,
        "labels_attrs": ome.labels_attrs,
    }
    return image, labels, metadata


def read_labels_ome_zarr(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The first label image of an OME-Zarr (``uint32``, level 0) and its attrs."""
    ome = open_ome_zarr(path)
    if not ome.labels_levels:
        raise InputError(f"{path} is an OME-Zarr image without labels")
    name = next(iter(ome.labels_levels))
    return spatial_labels(ome.labels_level(name)), ome.labels_attrs[name]
