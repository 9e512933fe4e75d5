"""Model copies: the same weights with a card that holds tuned post-processing defaults.

Examples
--------
>>> export_model("threeclass-nuclei", "models", knobs={"min_size": 20})  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..arrays import InputError
from .staging import safe_name, scratch_folder


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
    from ..configs import config_to_dict
    from ..pipeline import Model

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
    from ..checkpoint import save_model

    if isinstance(model, str | Path):
        from ..zoo import find_model

        card, net = find_model(model)
    elif isinstance(model, tuple):
        card, net = model
    else:
        card, net = model.card, model.net
    backend, tuned = model_settings(card, backend, knobs)
    name = card.name + "-tuned" if name is None else str(name).strip()
    if not name or name != safe_name(name) or name in (".", ".."):
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
    with scratch_folder(directory / name) as staging:
        save_model(staging, name, net, new)
        # weights first: a card never points at weights that are not there yet
        for target in targets:
            os.replace(staging / target.name, target)
    return targets[1]
