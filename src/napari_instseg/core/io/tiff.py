"""TIFF labels: one ``uint32`` page per Z plane, zlib-compressed, with their provenance.

ImageJ/Fiji opens a 3D file as a stack. What made the labels is stored in the TIFF's JSON
description under :data:`~napari_instseg.core.io.provenance.ATTRS_KEY` and comes back with
:func:`read_labels_tiff`.

Examples
--------
>>> write_labels_tiff("cells.tif", labels, attrs={"model": "threeclass-nuclei"})  # doctest: +SKIP
>>> labels, attrs = read_labels_tiff("cells.tif")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import InputError, spatial_labels
from .provenance import ATTRS_KEY, jsonable
from .staging import staged_output


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
    :data:`ATTRS_KEY` and come back with :func:`read_labels_tiff`.

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


def read_labels_tiff(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels (``uint32``) of an integer TIFF and the attrs stored with them (``{}`` for a
    TIFF we did not write)."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            data = tif.asarray()
            shaped = tif.shaped_metadata or ({},)
    except Exception as err:  # tifffile raises many types for broken files
        raise InputError(f"cannot read {path} as TIFF: {err}") from err
    return spatial_labels(data), dict(shaped[0].get(ATTRS_KEY, {}) or {})
