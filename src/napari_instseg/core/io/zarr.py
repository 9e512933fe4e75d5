"""zarr labels: one chunked, compressed zarr (format 3) ``uint32`` array with its provenance.

The axes are named ``z``, ``y``, ``x`` (``dimension_names``); what made the labels is stored
in the array's attributes under :data:`~napari_instseg.core.io.provenance.ATTRS_KEY`. The
chunking and compression here are also those of the OME-Zarr pyramids
(:mod:`~napari_instseg.core.io.ome_zarr`).

Examples
--------
>>> write_labels_zarr("cells.zarr", labels, attrs={"model": "threeclass-nuclei"})  # doctest: +SKIP
>>> labels, attrs = read_labels_zarr("cells.zarr")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..arrays import LABEL_DTYPE, InputError, spatial_labels
from .provenance import ATTRS_KEY, jsonable
from .staging import staged_output

#: Names of the spatial axes, the last two or three of them.
SPATIAL_NAMES = ("z", "y", "x")


def chunks(shape: tuple[int, ...], *, leading: int = 0) -> tuple[int, ...]:
    """Chunk shape: whole leading (channel) axes of 1, then ~256 KiB-1 MiB spatial blocks."""
    spatial = shape[leading:]
    edges = (256, 256) if len(spatial) == 2 else (32, 128, 128)
    return (1,) * leading + tuple(max(1, min(s, e)) for s, e in zip(spatial, edges, strict=True))


def compressor():
    """The codec of every array we write: zstd through Blosc, with byte shuffling."""
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


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
            chunks=chunks(labels.shape),
            compressors=[compressor()],
            fill_value=0,
            zarr_format=3,
            dimension_names=list(SPATIAL_NAMES[-labels.ndim :]),
            attributes={ATTRS_KEY: jsonable(dict(attrs or {}))},
        )
        arr[...] = labels
    return Path(path)


def read_labels_zarr(path: str | Path) -> tuple[np.ndarray, dict[str, Any]]:
    """Labels (``uint32``) of a zarr integer array and the attrs stored with them."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise InputError(f"cannot open {path} as zarr: {err}") from err
    if not isinstance(node, zarr.Array):
        raise InputError(f"{path} is a zarr group, not a labels array")
    return spatial_labels(node[...]), dict(node.attrs.get(ATTRS_KEY, {}) or {})
