"""Provenance: how labels were made, stored with them by every writer.

The record travels with the labels as TIFF shaped metadata and zarr attributes, both under
:data:`ATTRS_KEY`, and as the text columns :data:`MADE_BY` of the object table and GeoJSON;
:func:`write_json` writes it next to an output.
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
