"""The object table: one row per object (id, area, centroid, bounding box, mean intensity,
what made it), as columns in memory or a CSV file.

Examples
--------
>>> write_object_table("cells.csv", labels, image, metadata=layer_metadata)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import InputError, as_channel_first, spatial_labels
from .provenance import MADE_BY, jsonable
from .staging import staged_output

_AXIS_NAMES = ("z", "y", "x")


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
    :data:`~napari_instseg.core.io.provenance.MADE_BY` (``model``, ``method``, ``backend``,
    ``knobs`` as a JSON string, empty strings when unknown), repeated on every row.

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
    names = _AXIS_NAMES[-ndim:]
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
    for key in MADE_BY:
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
