"""Live tuning: re-assemble labels from a cached prediction as knobs change, and time it.

The network output is decoded once; every knob change re-runs only the assembly back-end on
the cached arrays. This is what makes sliders live.
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field

import numpy as np

from .configs import config_to_dict
from .pipeline import Model, assemble_decoded, assembly_report, on_input_grid
from .predict import Prediction


@dataclass(frozen=True)
class TuneResult:
    """Labels for one knob setting, with the object count and the time assembly took."""

    labels: np.ndarray
    backend: str
    knobs: dict
    n_objects: int
    seconds: float
    report: dict = field(default_factory=dict)


class Tuner:
    """Cached decoded arrays of one prediction; ``assemble`` is the only work per knob change.

    A prediction made on a resized image (``diameter``) is assembled on its own grid and the
    labels are mapped back to the input's grid; tuning never re-predicts.

    Examples
    --------
    >>> tuner = Tuner(model, prediction)                  # doctest: +SKIP
    >>> tuner.assemble("watershed", {"seed_threshold": 0.8}).n_objects  # doctest: +SKIP
    """

    def __init__(self, model: Model, prediction: Prediction, intermediate: dict | None = None):
        self.model = model
        self.prediction = prediction
        # a Segmentation's own decoded arrays: caches keyed on them (patch votes) carry over
        self.intermediate = intermediate or model.method.decode(prediction.raw, model.config)

    def defaults(self, backend: str) -> dict:
        """The model's default knobs for ``backend`` (card values for its own back-end)."""
        return config_to_dict(self.model.backend_config(backend))

    def assemble(
        self, backend: str, knobs: dict | None = None, *, mask: np.ndarray | None = None
    ) -> TuneResult:
        t0 = time.perf_counter()
        modality = self.prediction.info.get("modality", "")
        labels = assemble_decoded(
            self.model,
            self.intermediate,
            backend=backend,
            knobs=knobs,
            mask=mask,
            modality=modality,
        )
        labels = on_input_grid(self.prediction, labels)
        seconds = time.perf_counter() - t0
        used = config_to_dict(self.model.backend_config(backend, knobs))
        report = assembly_report(
            self.model, self.intermediate, backend=backend, knobs=knobs, modality=modality
        )
        return TuneResult(labels, backend, used, int(labels.max()), seconds, report)


def cli_command(
    model_name: str,
    backend: str,
    knobs: dict,
    defaults: dict,
    *,
    image="IMAGE.tif",
    diameter: float | str = "auto",
    appearance: str = "auto",
):
    """The ``napari-instseg segment`` command that reproduces a tuned setting.

    ``diameter`` ("auto", "off" or pixels) and ``appearance`` are added when they are not
    the default "auto".
    """
    parts = ["napari-instseg", "segment", image, "--model", model_name]
    if diameter != "auto":
        parts += ["--diameter", diameter if isinstance(diameter, str) else f"{diameter:g}"]
    if appearance != "auto":
        parts += ["--appearance", appearance]
    parts += ["--backend", backend]
    for k, v in knobs.items():
        if defaults.get(k) != v:
            parts += ["--set", f"{k}={v}"]
    parts += ["--output", "labels/"]
    return shlex.join(parts)
