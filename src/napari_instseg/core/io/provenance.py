"""Provenance: how labels were made, written by one function and kept by every writer.

:func:`provenance` is the one place that says what is recorded about a segmentation: the
model, method, back-end and knobs that made the labels, the image they were made from, how
the model saw it (modality, the diameter plan, the appearance mapping), the assembly's
report, and the package versions. ``segment`` (its JSON next to each output and the labels'
own metadata), the blockwise engine (the zarr / OME-Zarr attributes) and the Segment widget
(the labels layer's metadata) all call it, so the same segmentation carries the same record
whichever front end made it. :data:`PROVENANCE_KEYS` are the keys writers keep from a labels
layer's metadata; :data:`MADE_BY` the ones the object table and GeoJSON repeat per object.

The record travels with the labels as TIFF shaped metadata and zarr attributes, both under
:data:`ATTRS_KEY`.

Examples
--------
>>> how = provenance(model, backend="watershed", knobs=knobs, info=prediction.info,
...                  report=report, source_image="cells")  # doctest: +SKIP
>>> write_json("cells.json", how)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .staging import staged_output

#: Attribute key (zarr) and metadata key (TIFF) under which our own metadata is stored.
ATTRS_KEY = "napari_instseg"
#: What made the labels: the text columns of the object table and GeoJSON properties.
MADE_BY = ("model", "method", "backend", "knobs")
#: How the model saw one image (or one plane of a stack), and what the assembly reported.
LOOK_KEYS = ("modality", "diameter", "appearance", "report")
#: Everything :func:`provenance` records, in order; the keys writers keep from a labels
#: layer's metadata.
PROVENANCE_KEYS = (*MADE_BY, "source_image", *LOOK_KEYS, "versions")


def made_by(model: str, method: str, backend: str, knobs: Mapping[str, Any]) -> dict:
    """The :data:`MADE_BY` entries of a record: the model's and method's names, the back-end
    and its knobs (also what ``export --model/--backend/--set`` restates)."""
    return {"model": str(model), "method": str(method), "backend": backend, "knobs": dict(knobs)}


def image_look(info: Mapping[str, Any] | None, report: Mapping[str, Any] | None) -> dict:
    """The :data:`LOOK_KEYS` of one image or plane: from a prediction's ``info`` (modality,
    diameter plan, appearance) and the assembly's ``report``."""
    info = info or {}
    return {
        "modality": info.get("modality", ""),
        "diameter": dict(info.get("diameter") or {}),
        "appearance": dict(info.get("appearance") or {}),
        "report": dict(report or {}),
    }


def provenance(
    model: Any,
    *,
    backend: str,
    knobs: Mapping[str, Any],
    info: Mapping[str, Any] | None = None,
    report: Mapping[str, Any] | None = None,
    source_image: str = "",
) -> dict[str, Any]:
    """How labels were made: one record with exactly the keys :data:`PROVENANCE_KEYS`.

    Parameters
    ----------
    model : Model
        The loaded model (:class:`~napari_instseg.core.pipeline.Model`: ``card``, ``method``).
    backend : str
        The assembly back-end used.
    knobs : mapping
        The back-end's knobs as used.
    info : mapping, optional
        The prediction's ``info`` (``modality``, ``diameter``, ``appearance``); for a
        stack, its first plane's.
    report : mapping, optional
        The assembly's report (routing, modality).
    source_image : str
        The name of the image the labels were made from (a layer's name, a file's stem).

    Returns
    -------
    dict
    """
    from ..checkpoint import current_versions

    return {
        **made_by(model.card.name, model.method.name, backend, knobs),
        "source_image": str(source_image),
        **image_look(info, report),
        "versions": current_versions(),
    }


def kept_provenance(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The provenance in a labels layer's ``metadata``: its :data:`PROVENANCE_KEYS` entries,
    what a writer stores with the labels."""
    metadata = metadata or {}
    return {k: metadata[k] for k in PROVENANCE_KEYS if k in metadata}


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


def write_json(path: str | Path, data: Mapping[str, Any], *, overwrite: bool = False) -> Path:
    """Write ``data`` (a provenance record, say) as an indented JSON file, NaN and infinity
    as ``null``, staged.

    Returns
    -------
    Path
        The written file.
    """
    text = json.dumps(jsonable(dict(data)), indent=2, allow_nan=False)
    with staged_output(path, overwrite=overwrite, folder=False) as staged:
        staged.write_text(text + "\n", encoding="utf-8")
    return Path(path)
