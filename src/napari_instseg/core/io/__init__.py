"""Reading and writing labels: one module per format, and the two entry points.

:func:`export_labels` is the one way labels are written (the CLI's ``segment`` and
``export``, the Export widget, napari's Save Layers); :func:`read_labels` the one way label
files are read back (``export``, ``evaluate``, the zarr reader of the plugin). Both choose
the format by the path's suffix (:data:`FORMATS`) and hand over to its module:

* :mod:`.tiff` (``.tif``), :mod:`.zarr` (``.zarr`` array), :mod:`.ome_zarr` (``.ome.zarr``
  image with label pyramids), :mod:`.table` (``.csv`` object table), :mod:`.roi` (ImageJ ROI
  set ``.zip``), :mod:`.geojson` (QuPath ``.geojson``);
* models: :mod:`.model_copy` (a card with tuned knobs), :mod:`.bioimageio` (a BioImage Model
  Zoo package);
* shared by all of them: :mod:`.staging` (every output is staged and renamed into place;
  run locks) and :mod:`.provenance` (what made the labels, recorded by one function).

Examples
--------
>>> export_labels("cells.tif", labels, attrs=provenance_record)  # doctest: +SKIP
>>> labels, attrs = read_labels("cells.tif")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import InputError
from .geojson import write_geojson
from .ome_zarr import is_ome_zarr, read_labels_ome_zarr, write_ome_zarr
from .roi import write_imagej_rois
from .table import write_object_table
from .tiff import read_labels_tiff, write_labels_tiff
from .zarr import read_labels_zarr, write_labels_zarr

#: Formats by file suffix, longest suffix first so ``.ome.zarr`` wins over ``.zarr``.
FORMATS = {
    ".ome.zarr": "ome-zarr",
    ".zarr": "zarr",
    ".tiff": "tiff",
    ".tif": "tiff",
    ".csv": "csv",
    ".zip": "imagej-roi",
    ".geojson": "geojson",
}


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


def read_labels(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels (``uint32``) of a TIFF, zarr array or OME-Zarr (its first label image) and the
    attrs stored with them: what :func:`export_labels` wrote, or any integer TIFF / zarr.

    Raises
    ------
    InputError
        For a missing file, another format, or data that are not labels.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        return read_labels_tiff(path)
    if suffix == ".zarr":
        if is_ome_zarr(path):
            return read_labels_ome_zarr(path)
        return read_labels_zarr(path)
    raise InputError(f"unsupported labels format {suffix!r} for {path}; use .tif or .zarr")
