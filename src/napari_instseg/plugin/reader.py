"""npe2 reader for ``*.zarr`` folders: projects, OME-Zarr images with labels, labels arrays.

* a napari-instseg project (:mod:`napari_instseg.core.project`): every stored image, its
  annotation (paired with the image the way the Annotate widget pairs them) and its
  predictions with the metadata they were saved with;
* an OME-Zarr image (as written by :func:`napari_instseg.core.io.ome_zarr.write_ome_zarr`): the
  image (all pyramid levels) and each of its label images;
* a zarr (format 3) integer array: one labels layer with its stored metadata.

Anything else gets ``None``, so napari tries its other readers.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from napari_instseg.core.io import read_labels
from napari_instseg.core.io.ome_zarr import is_ome_zarr, open_ome_zarr
from napari_instseg.core.project import Project, is_project

from ._layers import ANNOTATION_KEY

LayerData = tuple  # (data, metadata dict, layer type)


def _as_path(path) -> Path | None:
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(str(path).rstrip("/\\"))
    return p if p.suffix.lower() == ".zarr" and p.is_dir() else None


def _labels_array(path: Path):
    """The zarr (format 3) integer array at ``path``, or None."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception:  # a foreign folder: leave it to other readers
        return None
    if not isinstance(node, zarr.Array) or node.metadata.zarr_format != 3:
        return None
    if np.dtype(node.dtype).kind not in "iu" or node.ndim not in (2, 3):
        return None
    return node


def get_reader(path) -> Callable[[str], list[LayerData]] | None:
    """npe2 ``get_reader``: a reader for the folders described above, else None."""
    p = _as_path(path)
    if p is None:
        return None
    if is_project(p):
        return read_project
    if is_ome_zarr(p):
        return read_ome_zarr_layers
    if _labels_array(p) is not None:
        return read_labels_zarr
    return None


def read_project(path) -> list[LayerData]:
    """Images, annotations and predictions of every entry of a project folder."""
    p = _as_path(path)
    project = Project(p, create=False)
    layers: list[LayerData] = []
    for entry in project.entries():
        image = project.load_image(entry.key) if entry.has_image else None
        if image is not None:
            layers.append((image, {"name": entry.name, "metadata": {"project": str(p)}}, "image"))
        annotations = project.load_annotations(entry.key)
        if annotations is not None:
            info = {"image": entry.name, "project": str(p), "key": entry.key}
            meta = {"name": f"{entry.name} annotations", "metadata": {ANNOTATION_KEY: info}}
            layers.append((annotations, meta, "labels"))
        stored = project.load_predictions(entry.key)
        if stored is not None:
            labels, metadata = stored
            model = metadata.get("model")
            name = f"{entry.name} [{model}]" if model else f"{entry.name} predictions"
            metadata = {"source_image": entry.name, **metadata, "project": str(p)}
            layers.append((labels, {"name": name, "metadata": metadata}, "labels"))
    return layers


def read_ome_zarr_layers(path) -> list[LayerData]:
    """The image of an OME-Zarr (a multiscale layer when it has several levels) and its
    label images. Single-level data is read into memory so labels stay editable."""
    ome = open_ome_zarr(_as_path(path))
    multiscale = len(ome.image_levels) > 1
    image = list(ome.image_levels) if multiscale else np.asarray(ome.image_levels[0][...])
    image_meta: dict = {
        "name": ome.name,
        "scale": ome.scales[0],
        "metadata": {"ome_zarr": str(ome.path)},
    }
    if multiscale:
        image_meta["multiscale"] = True
    if ome.channel_axis is not None:
        image_meta["channel_axis"] = ome.channel_axis
    layers: list[LayerData] = [(image, image_meta, "image")]
    for name, levels in ome.labels_levels.items():
        if multiscale:
            import dask.array as da

            data = [da.from_zarr(level) for level in levels]
            if ome.channel_axis is not None and data[0].ndim == len(ome.axes):
                data = [da.take(level, 0, axis=ome.channel_axis) for level in data]
        else:
            data = ome.labels_level(name, 0)
        metadata = {**ome.labels_attrs.get(name, {}), "ome_zarr": str(ome.path)}
        metadata.pop("layer_name", None)
        meta = {"name": name, "scale": ome.scales[0], "metadata": metadata}
        if multiscale:
            meta["multiscale"] = True
        layers.append((data, meta, "labels"))
    return layers


def read_labels_zarr(path) -> list[LayerData]:
    """A zarr integer array as one labels layer, with the metadata stored next to it."""
    p = _as_path(path)
    labels, metadata = read_labels(p)
    name = metadata.pop("layer_name", None) or p.name[: -len(".zarr")]
    return [(labels, {"name": name, "metadata": metadata}, "labels")]
