"""npe2 writers: File > Save Layers to TIFF, zarr, OME-Zarr, a CSV object table, an ImageJ
ROI set (``.zip``) and QuPath GeoJSON.

Each writer turns napari's layer data tuples into arrays and metadata and calls
:func:`napari_instseg.core.io.export_labels`. napari's save dialog has already asked before
replacing a file, so the writers overwrite (a folder is only ever replaced when it is a zarr
store).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from napari_instseg.core.arrays import InputError
from napari_instseg.core.io import export_labels
from napari_instseg.core.io.provenance import kept_provenance


class ExportError(RuntimeError):
    """Why an export was refused. Not a ValueError on purpose: napari turns a ValueError
    from a writer into a generic "not a valid writer" warning and the reason is lost."""


def _reported(writer):
    @functools.wraps(writer)
    def run(*args):
        try:
            return writer(*args)
        except InputError as err:
            raise ExportError(str(err)) from err

    return run


def labels_attrs(meta: dict) -> dict[str, Any]:
    """What produced a labels layer (the provenance in its metadata), plus its name."""
    attrs = kept_provenance(meta.get("metadata"))
    if meta.get("name"):
        attrs["layer_name"] = str(meta["name"])
    return attrs


def full_resolution(data, meta: dict) -> np.ndarray:
    """Full-resolution data of a layer (the first level of a multiscale layer)."""
    if meta.get("multiscale") or isinstance(data, list | tuple):
        data = data[0]
    return np.asarray(data)


def image_channel_axis(image: np.ndarray, image_meta: dict, spatial_ndim: int) -> int | None:
    """The channel axis of an image layer whose spatial axes are its last ``spatial_ndim``."""
    if image_meta.get("rgb"):
        return -1
    extra = image.ndim - spatial_ndim
    if extra == 0:
        return None
    if extra == 1:
        return 0
    raise InputError(
        f"image {image_meta.get('name', '')!r} has shape {image.shape}, which does not fit "
        f"labels with {spatial_ndim} axes"
    )


def _spacing(meta: dict, ndim: int) -> tuple[float, ...] | None:
    scale = meta.get("scale")
    if scale is None:
        return None
    spacing = tuple(float(s) for s in list(scale)[-ndim:])
    return None if all(s == 1.0 for s in spacing) else spacing


def _split(layer_data: list[tuple]) -> tuple[tuple | None, list[tuple]]:
    images = [item for item in layer_data if item[2] == "image"]
    labels = [item for item in layer_data if item[2] == "labels"]
    if len(images) > 1:
        raise InputError("select one image layer (or none) together with the labels")
    return (images[0] if images else None), labels


@_reported
def write_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """One labels layer to a ``uint32`` TIFF."""
    labels = full_resolution(data, meta)
    export_labels(path, labels, kind="tiff", attrs=labels_attrs(meta), overwrite=True)
    return [path]


@_reported
def write_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """One labels layer to a zarr (format 3) array."""
    if path.lower().rstrip("/").endswith(".ome.zarr"):
        # napari matches ".zarr" here when only labels are selected
        raise InputError("OME-Zarr export needs the image layer selected too")
    labels = full_resolution(data, meta)
    export_labels(path, labels, kind="zarr", attrs=labels_attrs(meta), overwrite=True)
    return [path]


@_reported
def write_ome(path: str, layer_data: list[tuple]) -> list[str]:
    """One image layer and its labels layers to an OME-Zarr image with labels."""
    image_item, labels_items = _split(layer_data)
    if image_item is None:
        raise InputError("OME-Zarr export needs the image layer selected too")
    if not labels_items:
        raise InputError("OME-Zarr export needs at least one labels layer")
    labels = {
        str(meta.get("name") or f"labels{i}"): full_resolution(data, meta)
        for i, (data, meta, _) in enumerate(labels_items)
    }
    attrs = {
        str(meta.get("name") or f"labels{i}"): labels_attrs(meta)
        for i, (_, meta, _) in enumerate(labels_items)
    }
    image_data, image_meta, _ = image_item
    image = full_resolution(image_data, image_meta)
    ndim = next(iter(labels.values())).ndim
    export_labels(
        path,
        labels,
        image,
        kind="ome-zarr",
        image_name=str(image_meta.get("name") or "image"),
        channel_axis=image_channel_axis(image, image_meta, ndim),
        attrs=attrs,
        spacing=_spacing(image_meta, ndim),
        overwrite=True,
    )
    return [path]


def _labels_and_image(layer_data: list[tuple], what: str):
    """The one selected labels layer at full resolution, and the selected image layer (if
    any) with its channel axis: ``(labels, image, channel_axis, labels_meta)``."""
    image_item, labels_items = _split(layer_data)
    if len(labels_items) != 1:
        raise InputError(f"select exactly one labels layer for {what}")
    data, meta, _ = labels_items[0]
    labels = full_resolution(data, meta)
    image = channel_axis = None
    if image_item is not None:
        image = full_resolution(image_item[0], image_item[1])
        channel_axis = image_channel_axis(image, image_item[1], labels.ndim)
    return labels, image, channel_axis, meta


@_reported
def write_csv(path: str, layer_data: list[tuple]) -> list[str]:
    """A labels layer's per-object table; mean intensities from an image layer if given."""
    labels, image, channel_axis, meta = _labels_and_image(layer_data, "the object table")
    export_labels(
        path,
        labels,
        image,
        kind="csv",
        channel_axis=channel_axis,
        metadata=meta.get("metadata") or {},
        overwrite=True,
    )
    return [path]


@_reported
def write_rois(path: str, data: Any, meta: dict) -> list[str]:
    """One labels layer to an ImageJ ROI set: one ROI per object, named by its id."""
    export_labels(path, full_resolution(data, meta), kind="imagej-roi", overwrite=True)
    return [path]


@_reported
def write_qupath_geojson(path: str, layer_data: list[tuple]) -> list[str]:
    """A labels layer's outlines as QuPath GeoJSON, with the object table's measurements
    (mean intensities from an image layer if one is selected too)."""
    labels, image, channel_axis, meta = _labels_and_image(layer_data, "GeoJSON")
    export_labels(
        path,
        labels,
        image,
        kind="geojson",
        channel_axis=channel_axis,
        metadata=meta.get("metadata") or {},
        overwrite=True,
    )
    return [path]
