"""Export: labels to TIFF, zarr and OME-Zarr, a per-object CSV table, tuned model copies.

Every writer stages its output in a hidden sibling of the target (``.NAME.partial-*``) and
renames it into place only when everything is written, so a failed or interrupted export
never leaves a half-written file or folder under the name the user asked for. An existing
target is refused unless ``overwrite=True``; even then a folder is only replaced when it is
a zarr store, so a mistyped path cannot wipe an unrelated folder.

What produced the labels (model, method, back-end, knobs, source image, versions) travels
with them: as TIFF shaped metadata, as zarr attributes under :data:`ATTRS_KEY` and as
columns of the object table.

Examples
--------
>>> write_labels_tiff("cells.tif", labels, attrs={"model": "threeclass-nuclei"})  # doctest: +SKIP
>>> write_ome_zarr("cells.ome.zarr", image, labels, image_name="cells")  # doctest: +SKIP
>>> write_object_table("cells.csv", labels, image, metadata=layer_metadata)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from .arrays import LABEL_DTYPE, InputError, as_channel_first, as_labels
from .staging import clean_stale_staging, staging_name

#: Attribute key (zarr) and metadata key (TIFF) under which our own metadata is stored.
ATTRS_KEY = "napari_instseg"
#: The OME-Zarr (NGFF) version written; zarr format 3 with metadata under ``"ome"``.
OME_VERSION = "0.5"
#: Table columns that say how the labels were made, repeated on every row.
METADATA_COLUMNS = ("model", "method", "backend", "knobs")
#: Formats by file suffix, longest suffix first so ``.ome.zarr`` wins over ``.zarr``. The
#: ImageJ ROI set and QuPath GeoJSON writers live in :mod:`.io_roi` and :mod:`.io_geojson`.
FORMATS = {
    ".ome.zarr": "ome-zarr",
    ".zarr": "zarr",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".csv": "csv",
    ".zip": "imagej-roi",
    ".geojson": "geojson",
}

_SPATIAL_NAMES = ("z", "y", "x")
_MIN_PYRAMID_SIDE = 256
#: Axis types by name, for OME-Zarr 0.3 files whose axes are bare names.
_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def export_format(path: str | Path) -> str:
    """The export format a path asks for by its suffix: tiff, zarr, ome-zarr, csv,
    imagej-roi (``.zip``) or geojson.

    Raises
    ------
    InputError
        For a suffix that is none of :data:`FORMATS`.
    """
    name = Path(path).name.lower().rstrip("/")
    for suffix, kind in FORMATS.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return kind
    raise InputError(
        f"cannot tell the export format of {Path(path).name!r}: use a name ending in "
        + ", ".join(FORMATS)
    )


def image_stem(path: str | Path) -> str:
    """An image's name without its format suffix: ``X`` for ``X.tif``, ``X.zarr``,
    ``X.ome.zarr`` and ``X.ome.tif``. Outputs are named after it, and ``evaluate`` pairs
    predictions with ground truth by it."""
    name = Path(path).name.rstrip("/")
    for suffix in FORMATS:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = Path(name).stem
    return name[:-4] if name.lower().endswith(".ome") and len(name) > 4 else name


# -- plumbing ---------------------------------------------------------------------------------
def jsonable(value: Any) -> Any:
    """A JSON-safe copy of metadata: numpy scalars and arrays become plain numbers and lists,
    and NaN or infinity becomes ``null`` (a bare ``NaN`` is not JSON)."""

    def default(obj):
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        if isinstance(obj, Path):
            return str(obj)
        return repr(obj)

    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, list):
            return [finite(x) for x in v]
        return v

    return finite(json.loads(json.dumps(value, default=default)))


def is_zarr_store(path: Path) -> bool:
    return any((path / marker).is_file() for marker in ("zarr.json", ".zgroup", ".zarray"))


def _check_writable(path: Path) -> None:
    """Refuse a target whose folder cannot be made or written, before any work is done."""
    parent = Path(os.path.abspath(path)).parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: no permission to write in {parent}")


def check_target(path: Path, *, overwrite: bool, folder: bool) -> None:
    """Refuse targets that must not be replaced, or that cannot be written; an empty file or
    folder is always fine."""
    _check_writable(path)
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        if not folder:
            raise InputError(f"{path} is a folder; choose a file name")
        if not any(path.iterdir()):
            return
        if not overwrite:
            raise InputError(f"{path} already exists; choose another name or allow overwriting")
        if not is_zarr_store(path):
            raise InputError(f"refusing to replace {path}: it is a folder that is not a zarr store")
        return
    if path.lstat().st_size and not overwrite:
        raise InputError(f"{path} already exists; choose another name or allow overwriting")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink(missing_ok=True)


def _hidden_sibling(path: Path, tag: str) -> Path:
    return staging_name(path, tag)


def move_into_place(staged: Path, target: Path) -> None:
    """Rename ``staged`` to ``target``; an existing target is kept aside until that worked."""
    if not (target.exists() or target.is_symlink()):
        os.replace(staged, target)
        return
    old = _hidden_sibling(target, "old")
    os.replace(target, old)
    try:
        os.replace(staged, target)
    except OSError:
        os.replace(old, target)
        raise
    _remove(old)


@contextmanager
def staged_output(path: str | Path, *, overwrite: bool, folder: bool) -> Iterator[Path]:
    """Yield a temporary sibling of ``path`` to write into; rename it to ``path`` on success.

    On any error the temporary output is deleted and the target is left as it was.
    """
    target = Path(path)
    clean_stale_staging(target)  # what a killed writer left here (never a live one's)
    check_target(target, overwrite=overwrite, folder=folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    staged = _hidden_sibling(target, "partial")
    try:
        yield staged
        move_into_place(staged, target)
    except OSError as err:
        _remove(staged)
        if not err.filename or str(err.filename).startswith(str(staged)):
            # Name the file the user asked for, not the hidden one it was written as (a
            # write that fails on a full disk names no file at all).
            text = err.strerror or str(err)  # OSError("...") has no strerror
            raise type(err)(err.errno, text, str(target)) from err
        raise
    except BaseException:
        _remove(staged)
        raise


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


def _chunks(shape: tuple[int, ...], *, leading: int = 0) -> tuple[int, ...]:
    """Chunk shape: whole leading (channel) axes of 1, then ~256 KiB-1 MiB spatial blocks."""
    spatial = shape[leading:]
    edges = (256, 256) if len(spatial) == 2 else (32, 128, 128)
    return (1,) * leading + tuple(max(1, min(s, e)) for s, e in zip(spatial, edges, strict=True))


def _compressor():
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


# -- TIFF -------------------------------------------------------------------------------------
def write_labels_tiff(
    path: str | Path,
    labels: np.ndarray,
    *,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write labels as a zlib-compressed ``uint32`` TIFF.

    2D labels become one page; 3D labels one page per Z plane, which ImageJ/Fiji opens as a
    stack. ``attrs`` (model, knobs, ...) are stored in the TIFF's JSON description under
    :data:`ATTRS_KEY` and come back with :func:`read_labels`.

    Parameters
    ----------
    path : str or Path
        Target ``.tif`` / ``.tiff`` file.
    labels : ndarray of int
        ``(Y, X)`` or ``(Z, Y, X)`` instance labels, 0 = background.
    attrs : mapping, optional
        JSON-friendly metadata kept with the labels.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    import tifffile

    labels = spatial_labels(labels)
    axes = "ZYX"[-labels.ndim :]
    metadata = {"axes": axes, ATTRS_KEY: jsonable(dict(attrs or {}))}
    with staged_output(path, overwrite=overwrite, folder=False) as staged:
        tifffile.imwrite(
            staged,
            labels,
            compression="zlib",
            photometric="minisblack",
            metadata=metadata,
            bigtiff=labels.nbytes > 2**31,
        )
    return Path(path)


def write_json(path: str | Path, data: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``data`` as an indented JSON file (NaN and infinity as ``null``), staged.

    Returns
    -------
    Path
        The written file.
    """
    text = json.dumps(jsonable(dict(data)), indent=2, allow_nan=False)
    with staged_output(path, overwrite=overwrite, folder=False) as staged:
        staged.write_text(text + "\n", encoding="utf-8")
    return Path(path)


# -- zarr -------------------------------------------------------------------------------------
def write_labels_zarr(
    path: str | Path,
    labels: np.ndarray,
    *,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write labels as one chunked, compressed zarr (format 3) ``uint32`` array.

    ``attrs`` are stored as the array's attributes under :data:`ATTRS_KEY`; the axes are named
    ``z``, ``y``, ``x`` (``dimension_names``).

    Returns
    -------
    Path
        The written store (a folder).
    """
    import zarr

    labels = spatial_labels(labels)
    with staged_output(path, overwrite=overwrite, folder=True) as staged:
        arr = zarr.create_array(
            store=str(staged),
            shape=labels.shape,
            dtype=LABEL_DTYPE,
            chunks=_chunks(labels.shape),
            compressors=[_compressor()],
            fill_value=0,
            zarr_format=3,
            dimension_names=list(_SPATIAL_NAMES[-labels.ndim :]),
            attributes={ATTRS_KEY: jsonable(dict(attrs or {}))},
        )
        arr[...] = labels
    return Path(path)


# -- OME-Zarr ---------------------------------------------------------------------------------
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


def _node_name(name: str) -> str:
    """A zarr node name from a layer name: no path separators, no reserved prefix."""
    clean = "".join("_" if ch in '/\\:*?"<>|' else ch for ch in str(name)).strip()
    clean = clean.lstrip(".").lstrip("_") or "labels"
    return clean


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
    axes += [{"name": n, "type": "space"} for n in _SPATIAL_NAMES[-n_spatial:]]
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
        key = _node_name(name)
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
            chunks=_chunks(data.shape, leading=lead),
            compressors=[_compressor()],
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
        labels_group.attrs["ome"] = {"version": OME_VERSION, "labels": list(label_arrays)}
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


def read_labels(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Read labels written by this module (or any integer TIFF / zarr array) and their attrs.

    An OME-Zarr gives its first label image. Returns ``(labels as uint32, attrs)``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            with tifffile.TiffFile(path) as tif:
                data = tif.asarray()
                shaped = tif.shaped_metadata or ({},)
        except Exception as err:  # tifffile raises many types for broken files
            raise InputError(f"cannot read {path} as TIFF: {err}") from err
        return spatial_labels(data), dict(shaped[0].get(ATTRS_KEY, {}) or {})
    if suffix == ".zarr":
        import zarr

        if is_ome_zarr(path):
            ome = open_ome_zarr(path)
            if not ome.labels_levels:
                raise InputError(f"{path} is an OME-Zarr image without labels")
            name = next(iter(ome.labels_levels))
            return spatial_labels(ome.labels_level(name)), ome.labels_attrs[name]
        try:
            node = zarr.open(str(path), mode="r")
        except Exception as err:
            raise InputError(f"cannot open {path} as zarr: {err}") from err
        if not isinstance(node, zarr.Array):
            raise InputError(f"{path} is a zarr group, not a labels array")
        return spatial_labels(node[...]), dict(node.attrs.get(ATTRS_KEY, {}) or {})
    raise InputError(f"unsupported labels format {suffix!r} for {path}; use .tif or .zarr")


# -- object table -----------------------------------------------------------------------------
def object_table(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    channel_axis: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, np.ndarray]:
    """One row per object: id, area, centroid, bounding box, mean intensity, how it was made.

    Columns, in order: ``id``, ``area`` (pixels), ``centroid_[z_]y``, ``centroid_x``,
    ``bbox_min_*`` and ``bbox_max_*`` per axis (``max`` exclusive, as in
    ``skimage.measure.regionprops``), then with an image ``mean_intensity`` (single channel)
    or ``mean_intensity_0``, ``mean_intensity_1``, ... (one per channel), then
    :data:`METADATA_COLUMNS` (``model``, ``method``, ``backend``, ``knobs`` as a JSON string,
    empty strings when unknown), repeated on every row.

    Parameters
    ----------
    labels : ndarray of int
        ``(Y, X)`` or ``(Z, Y, X)`` labels, 0 = background. Ids need not be consecutive.
    image : ndarray, optional
        Intensities with the labels' spatial shape, plus a channel axis when
        ``channel_axis`` is given.
    channel_axis : int, optional
        Axis of ``image`` that holds channels (``-1`` for RGB).
    metadata : mapping, optional
        Labels layer metadata; ``model``, ``method``, ``backend`` and ``knobs`` are used.

    Returns
    -------
    dict of str to ndarray
        Columns of equal length, one entry per object, ordered by id.

    Examples
    --------
    >>> table = object_table(np.array([[0, 2, 2], [5, 0, 2]]))
    >>> table["id"].tolist(), table["area"].tolist()
    ([2, 5], [3, 1])
    """
    from scipy import ndimage as ndi

    labels = spatial_labels(labels)
    ndim = labels.ndim
    flat = labels.ravel()
    top = int(flat.max())
    if top <= 4 * flat.size + 1024:
        compact, ids_of = labels, None
    else:
        # ids too sparse for a table over the id range: number them 1..N first
        uniq, inverse = np.unique(flat, return_inverse=True)
        if uniq[0] != 0:
            uniq, inverse = np.concatenate([[0], uniq]), inverse + 1
        compact, ids_of = inverse.reshape(labels.shape), uniq
    cflat = compact.ravel()
    n_bins = int(cflat.max()) + 1
    counts = np.bincount(cflat, minlength=n_bins)
    present = np.flatnonzero(counts)
    present = present[present != 0]
    area = counts[present].astype(np.int64)
    ids = (ids_of[present] if ids_of is not None else present).astype(np.int64)

    columns: dict[str, np.ndarray] = {"id": ids, "area": area}
    names = _SPATIAL_NAMES[-ndim:]
    for axis, name in enumerate(names):
        shape = [1] * ndim
        shape[axis] = labels.shape[axis]
        coord = np.broadcast_to(
            np.arange(labels.shape[axis], dtype=np.float64).reshape(shape), labels.shape
        )
        sums = np.bincount(cflat, weights=coord.ravel(), minlength=n_bins)[present]
        columns[f"centroid_{name}"] = sums / np.maximum(area, 1)

    boxes = ndi.find_objects(compact)
    bbox = np.zeros((present.size, 2 * ndim), dtype=np.int64)
    for row, k in enumerate(present):
        box = boxes[k - 1]
        bbox[row, :ndim] = [s.start for s in box]
        bbox[row, ndim:] = [s.stop for s in box]
    for axis, name in enumerate(names):
        columns[f"bbox_min_{name}"] = bbox[:, axis]
    for axis, name in enumerate(names):
        columns[f"bbox_max_{name}"] = bbox[:, ndim + axis]

    if image is not None:
        channels = as_channel_first(image, ndim=ndim, channel_axis=channel_axis)
        if channels.shape[1:] != labels.shape:
            raise InputError(
                f"the image's spatial shape {channels.shape[1:]} does not match the labels' "
                f"{labels.shape}"
            )
        for c in range(channels.shape[0]):
            sums = np.bincount(cflat, weights=channels[c].ravel(), minlength=n_bins)[present]
            key = "mean_intensity" if channels.shape[0] == 1 else f"mean_intensity_{c}"
            columns[key] = sums / np.maximum(area, 1)

    meta = dict(metadata or {})
    for key in METADATA_COLUMNS:
        value = meta.get(key)
        if key == "knobs":
            text = json.dumps(jsonable(value), sort_keys=True) if value else ""
        else:
            text = "" if value is None else str(value)
        columns[key] = np.full(present.size, text, dtype=object)
    return columns


def _cell(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return repr(float(value))
    if isinstance(value, np.integer):
        return str(int(value))
    return str(value)


def write_object_table(
    path: str | Path,
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    channel_axis: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write :func:`object_table` as CSV (header row, one row per object).

    Opens with ``pandas.read_csv(path)`` or any spreadsheet; floats keep full precision.

    Returns
    -------
    Path
        The written file.
    """
    table = object_table(labels, image, channel_axis=channel_axis, metadata=metadata)
    header = list(table)
    with staged_output(path, overwrite=overwrite, folder=False) as staged:
        with open(staged, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows([_cell(v) for v in row] for row in zip(*table.values(), strict=True))
    return Path(path)


# -- model ------------------------------------------------------------------------------------
def export_labels(
    path: str | Path,
    labels: np.ndarray | Mapping[str, np.ndarray],
    image: np.ndarray | None = None,
    *,
    kind: str | None = None,
    attrs: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    channel_axis: int | None = None,
    image_name: str = "",
    labels_name: str = "labels",
    spacing: tuple[float, ...] | None = None,
    levels: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``labels`` to ``path`` in ``kind`` (default: by the path's suffix,
    :func:`export_format`): the one entry point for the CLI's and the widgets' label exports.

    ``attrs``: what is stored with the labels (TIFF description, zarr attributes, OME-Zarr
    label attributes; keyed by label name when ``labels`` is a mapping); ``metadata``: the
    provenance columns of the CSV table and the GeoJSON properties (default: ``attrs``).
    ``image`` feeds the intensity measurements and the OME-Zarr image (required there).
    Every writer stages its output and refuses an existing one unless ``overwrite``.
    """
    from .io_geojson import write_geojson
    from .io_roi import write_imagej_rois

    kind = kind or export_format(path)
    metadata = attrs if metadata is None else metadata
    if kind == "ome-zarr":
        if image is None:
            raise InputError("OME-Zarr export needs the image the labels were made from")
        return write_ome_zarr(
            path,
            image,
            labels,
            image_name=image_name or image_stem(path),
            labels_name=labels_name,
            channel_axis=channel_axis,
            attrs=attrs,
            spacing=spacing,
            levels=levels,
            overwrite=overwrite,
        )
    if isinstance(labels, Mapping):
        raise InputError(f"{kind} holds one label image, not {len(labels)}")
    if kind == "tiff":
        return write_labels_tiff(path, labels, attrs=attrs, overwrite=overwrite)
    if kind == "zarr":
        return write_labels_zarr(path, labels, attrs=attrs, overwrite=overwrite)
    if kind == "imagej-roi":
        return write_imagej_rois(path, labels, overwrite=overwrite)
    writer = {"csv": write_object_table, "geojson": write_geojson}.get(kind)
    if writer is None:
        raise InputError(
            f"unknown export format {kind!r}: use one of {sorted(set(FORMATS.values()))}"
        )
    return writer(
        path, labels, image, channel_axis=channel_axis, metadata=metadata, overwrite=overwrite
    )


def model_settings(
    card: Any, backend: str | None = None, knobs: Mapping[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """The back-end and full knob set for a model card: its defaults, then ``knobs``.

    Knobs given as strings (from a command line) are converted to the knob types.

    Raises
    ------
    InputError
        For a back-end that does not fit the model's method, or an unknown or bad knob.
    """
    from .configs import config_to_dict
    from .pipeline import Model

    backend = backend or card.backend
    try:
        spec = Model.from_card(card, None)
        return backend, config_to_dict(spec.backend_config(backend, dict(knobs or {})))
    except (TypeError, ValueError) as err:
        raise InputError(str(err)) from err


def export_model(
    model: Any,
    directory: str | Path,
    *,
    backend: str | None = None,
    knobs: Mapping[str, Any] | None = None,
    name: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a copy of a model (same weights) whose card holds tuned post-processing defaults.

    Writes ``NAME.safetensors`` and ``NAME.json`` into ``directory``. The card's ``backend``
    and ``backend_config`` become ``backend`` and the full knob set (the source card's
    defaults overridden by ``knobs``, checked against the back-end), and ``parent`` names the
    source model.

    Parameters
    ----------
    model : str, Path, (card, net) or loaded model
        A model name (see :func:`napari_instseg.core.zoo.list_models`), a card / weights
        path, what :func:`~napari_instseg.core.checkpoint.load_model` returns, or a loaded
        model with ``card`` and ``net`` attributes.
    directory : str or Path
        Folder for the two files (created when missing).
    backend : str, optional
        Assembly back-end; default the source card's.
    knobs : mapping, optional
        Knob values (strings are converted to the knob types).
    name : str, optional
        Name of the new model; default ``<source name>-tuned``.
    overwrite : bool
        Replace existing files of that name.

    Returns
    -------
    Path
        The new model card (``NAME.json``).

    Raises
    ------
    InputError
        For an unknown back-end or knob, a bad name, or existing files.
    """
    from .checkpoint import save_model

    if isinstance(model, str | Path):
        from .zoo import find_model

        card, net = find_model(model)
    elif isinstance(model, tuple):
        card, net = model
    else:
        card, net = model.card, model.net
    backend, tuned = model_settings(card, backend, knobs)
    name = card.name + "-tuned" if name is None else str(name).strip()
    if not name or name != _node_name(name) or name in (".", ".."):
        raise InputError(f"{name!r} is not usable as a model name (no path separators)")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} is a file; choose a folder for the model")
    targets = [directory / f"{name}.safetensors", directory / f"{name}.json"]
    existing = [t.name for t in targets if t.exists()]
    if existing and not overwrite:
        raise InputError(
            f"{', '.join(existing)} already exist(s) in {directory}; choose another name or "
            "allow overwriting"
        )
    new = replace(
        card,
        name=name,
        backend=backend,
        backend_config=tuned,
        parent=card.name,
        weights_sha256="",
        created="",
    )
    directory.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(directory / name)
    staging = _hidden_sibling(directory / name, "partial")
    try:
        save_model(staging, name, net, new)
        # weights first: a card never points at weights that are not there yet
        for target in targets:
            os.replace(staging / target.name, target)
    finally:
        _remove(staging)
    return targets[1]
