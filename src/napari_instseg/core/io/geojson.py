"""QuPath GeoJSON: labels as a FeatureCollection of object outlines with their measurements.

One Feature per object (in 3D one per object and Z plane). Its geometry follows the object's
pixel edges (:mod:`napari_instseg.core.outlines`) in pixel coordinates of the full-resolution
image, ``x`` right and ``y`` down, pixel ``(row, col)`` covering ``[col, col + 1] x [row,
row + 1]`` as in QuPath: a ``Polygon`` for an object in one piece, a ``MultiPolygon`` for one
in several pieces, holes as interior rings. Exterior rings are counter-clockwise and holes
clockwise in the coordinates as written (RFC 7946's right-hand rule).

Properties, as QuPath reads them when the file is dropped on an image or opened with
``File > Import objects from file``:

* ``objectType``: ``"detection"`` (light objects, as cell detections are in QuPath);
* ``name``: the label id as text; ``id``: the label id as a number;
* ``measurements``: the numeric columns of :func:`~napari_instseg.core.io.table.object_table`
  except ``id`` (area in pixels, centroid, bounding box, mean intensity with an image),
  which QuPath lists in its measurement table;
* ``model``, ``method``, ``backend``, ``knobs``: how the labels were made (the table's
  text columns);
* in 3D ``plane``: the 0-based Z index, and the geometry's QuPath ``plane``
  (``{"c": -1, "z": Z, "t": 0}``) so the outline lands on its slice. The measurements of a
  3D object are those of the whole object (its volume as ``area``), repeated on each plane.

Examples
--------
>>> write_geojson("cells.geojson", labels, image, metadata=layer.metadata)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

# The staging, label checks and table of the other exports, so every export behaves the same.
from ..arrays import spatial_labels
from ..outlines import Polygon, label_outlines
from .provenance import MADE_BY, jsonable
from .staging import staged_output
from .table import object_table

_log = logging.getLogger(__name__)


def polygons_to_geometry(polygons: list[Polygon]) -> dict[str, Any]:
    """A GeoJSON ``Polygon`` (one part) or ``MultiPolygon`` (several) with closed rings."""

    def closed(ring: np.ndarray) -> list[list[int]]:
        coords = ring.tolist()
        return coords + coords[:1]

    parts = [[closed(ring) for ring in polygon] for polygon in polygons]
    if len(parts) == 1:
        return {"type": "Polygon", "coordinates": parts[0]}
    return {"type": "MultiPolygon", "coordinates": parts}


def labels_to_features(
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    channel_axis: int | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A GeoJSON FeatureCollection of the objects of ``(Y, X)`` or ``(Z, Y, X)`` labels.

    Parameters are those of :func:`~napari_instseg.core.io.table.object_table`, whose columns
    become the features' properties (see the module docstring).

    Returns
    -------
    dict
        ``{"type": "FeatureCollection", "features": [...]}``, features by id (then Z).
    """
    labels = spatial_labels(labels)
    table = object_table(labels, image, channel_axis=channel_axis, metadata=metadata)
    rows: dict[int, dict[str, Any]] = {}
    for index, label_id in enumerate(table["id"].tolist()):
        measurements = {}
        texts = {}
        for column, values in table.items():
            if column == "id":
                continue
            value = values[index]
            if column in MADE_BY:  # properties of their own, not measurements
                texts[column] = str(value)
            else:
                measurements[column] = value.item() if isinstance(value, np.generic) else value
        rows[label_id] = {
            "objectType": "detection",
            "name": str(label_id),
            "id": label_id,
            "measurements": measurements,
            **texts,
        }

    features: list[dict[str, Any]] = []
    if labels.ndim == 2:
        for label_id, polygons in label_outlines(labels).items():
            features.append(
                {
                    "type": "Feature",
                    "geometry": polygons_to_geometry(polygons),
                    "properties": rows[label_id],
                }
            )
    else:
        by_object: dict[int, list[dict[str, Any]]] = {}
        for z, plane in enumerate(labels):
            for label_id, polygons in label_outlines(plane).items():
                geometry = polygons_to_geometry(polygons)
                geometry["plane"] = {"c": -1, "z": z, "t": 0}  # QuPath's ImagePlane
                by_object.setdefault(label_id, []).append(
                    {
                        "type": "Feature",
                        "geometry": geometry,
                        "properties": {**rows[label_id], "plane": z},
                    }
                )
        features = [f for label_id in sorted(by_object) for f in by_object[label_id]]
    return {"type": "FeatureCollection", "features": features}


def write_geojson(
    path: str | Path,
    labels: np.ndarray,
    image: np.ndarray | None = None,
    *,
    channel_axis: int | None = None,
    metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write labels as QuPath GeoJSON: one Feature per object outline, with measurements.

    Labels without objects give an empty FeatureCollection (and a logged warning).

    Parameters
    ----------
    path : str or Path
        Target ``.geojson`` file.
    labels : ndarray of int
        ``(Y, X)`` or ``(Z, Y, X)`` instance labels, 0 = background.
    image : ndarray, optional
        Intensities for the ``mean_intensity`` measurements (see ``object_table``).
    channel_axis : int, optional
        Axis of ``image`` that holds channels.
    metadata : mapping, optional
        Labels layer metadata (``model``, ``method``, ``backend``, ``knobs``).
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    Path
        The written file.
    """
    collection = labels_to_features(labels, image, channel_axis=channel_axis, metadata=metadata)
    if not collection["features"]:
        _log.warning("the labels have no objects: writing an empty FeatureCollection to %s", path)
    text = json.dumps(jsonable(collection), allow_nan=False, separators=(",", ":"))
    with staged_output(path, overwrite=overwrite, folder=False) as staged:
        staged.write_text(text + "\n", encoding="utf-8")
    return Path(path)
