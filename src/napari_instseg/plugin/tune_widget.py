"""Tune panel: every knob of the model's back-ends, live, from the cached prediction.

A knob change is debounced, then only assembly runs, in a worker: the GUI thread only
reads the knobs and, at the end, writes the layer. Each change gets a generation number; a
result from an older generation than the newest request is dropped, so the layer always
ends at the newest setting. While a setting is waiting for its result the status line says
"updating" (assembly can take a second on large images).
"""

from __future__ import annotations

import time
from pathlib import Path

from qtpy.QtCore import QTimer, Signal
from qtpy.QtWidgets import (
    QApplication,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
)

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.io.model_copy import export_model
from napari_instseg.core.tuning import Tuner, TuneResult, cli_command
from napari_instseg.core.zoo import user_model_dir

from ._forms import KnobForm
from ._jobs import call_in_worker

DEBOUNCE_MS = 40
#: Stands for the image in the CLI command of a layer that was not read from a file.
NO_FILE = "IMAGE.tif"


class TunePanel(QGroupBox):
    """Back-end choice + knob form; emits ``result`` (a TuneResult) for the newest setting."""

    result = Signal(object)
    message = Signal(str)

    def __init__(self, parent=None):
        super().__init__("Tune (live, from the cached prediction)", parent)
        self.tuner: Tuner | None = None
        self.image_path: str | None = None
        self.layer_name = ""
        self.run_options: dict = {}
        self._generation = 0
        self._shown_generation = 0
        self._requested_at: dict[int, float] = {}
        self.latencies: list[float] = []
        self._busy = None
        self._pending = False
        self._shown_text = ""
        # an assembly may finish after the panel is gone (the dock closed meanwhile): its
        # result is then dropped (the flag is not kept on self, whose C++ side is gone)
        alive = self._alive = [True]
        self.destroyed.connect(lambda *_: alive.__setitem__(0, False))
        self.backend = QComboBox()
        self.backend.setObjectName("backend")
        self.backend.currentTextChanged.connect(self._backend_changed)
        self.form_box = QVBoxLayout()
        self.form: KnobForm | None = None
        self.status = QLabel("segment an image first")
        self.status.setObjectName("tune_status")
        self.reset_button = QPushButton("Reset to model defaults")
        self.reset_button.clicked.connect(self.reset)
        self.save_button = QPushButton("Save as model defaults")
        self.save_button.clicked.connect(self.save_defaults)
        self.copy_button = QPushButton("Copy CLI command")
        self.copy_button.clicked.connect(self.copy_command)
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(DEBOUNCE_MS)
        self._timer.timeout.connect(self._launch)
        top = QFormLayout()
        top.addRow("back-end", self.backend)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(self.form_box)
        layout.addWidget(self.status)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reset_button)
        buttons.addWidget(self.save_button)
        layout.addLayout(buttons)
        layout.addWidget(self.copy_button)
        self.setEnabled(False)

    # -- set-up -----------------------------------------------------------------------------
    def set_tuner(
        self,
        tuner: Tuner,
        first: TuneResult,
        image_path: str | None,
        *,
        layer_name: str = "",
        diameter="auto",
        appearance: str = "auto",
    ) -> None:
        """Attach a fresh prediction; the form shows the knobs that produced ``first``.
        ``image_path`` is the file the layer ``layer_name`` was read from (None: it has
        none); it, ``diameter`` and ``appearance`` (the user's choices) go into the CLI
        command."""
        self.tuner, self.image_path, self.layer_name = tuner, image_path, layer_name
        self.run_options = {"diameter": diameter, "appearance": appearance}
        self.backend.blockSignals(True)
        self.backend.clear()
        self.backend.addItems(list(tuner.model.method.backends))
        self.backend.setCurrentText(first.backend)
        self.backend.blockSignals(False)
        self._build_form(first.backend, first.knobs)
        self._show_status(first)
        self.setEnabled(True)

    def _build_form(self, backend: str, values: dict) -> None:
        if self.form is not None:
            self.form.setParent(None)
            self.form.deleteLater()
        self.form = KnobForm(get_backend(backend).config_type, values)
        self.form.changed.connect(self._knobs_changed)
        self.form_box.addWidget(self.form)

    def _backend_changed(self, name: str) -> None:
        if self.tuner is None or not name:
            return
        self._build_form(name, self.tuner.defaults(name))
        self.request()

    # -- live re-assembly -------------------------------------------------------------------
    def _knobs_changed(self, _values: dict) -> None:
        self.request()

    def request(self) -> None:
        """Ask for re-assembly with the current knobs (debounced)."""
        self._generation += 1
        self._requested_at[self._generation] = time.perf_counter()
        self._timer.start()
        self._show_pending()

    @property
    def pending(self) -> bool:
        """Whether the layer does not show the newest setting yet."""
        return self._shown_generation != self._generation

    def _show_pending(self) -> None:
        shown = f" (shown: {self._shown_text})" if self._shown_text else ""
        self.status.setText(f"updating …{shown}")

    def _launch(self) -> None:
        if self.tuner is None or self.form is None:
            return
        if self._busy is not None and self._busy.running:
            # Assembly cannot be interrupted half-way; run the newest setting right after.
            self._pending = True
            return
        generation, tuner = self._generation, self.tuner
        backend, knobs = self.backend.currentText(), self.form.values()
        self._busy = call_in_worker(
            lambda: tuner.assemble(backend, knobs),
            on_done=lambda res, g=generation: self._done(g, res),
            on_error=lambda err, g=generation: self._failed(g, err),
        )

    def _run_waiting(self, generation: int) -> None:
        """After the assembly of ``generation`` ended: start the newest setting if it was
        asked for while that one ran."""
        if self._pending:
            self._pending = False
            if generation != self._generation:
                self._launch()

    def _failed(self, generation: int, err: BaseException) -> None:
        if not self._alive[0]:
            return
        self._run_waiting(generation)
        if generation == self._generation:
            self._shown_generation = generation  # nothing newer is coming
            self.status.setText(f"tuning failed: {err}")
        self.message.emit(f"tuning failed: {err}")

    def _done(self, generation: int, res: TuneResult) -> None:
        if not self._alive[0]:
            return
        self._run_waiting(generation)
        if generation < self._shown_generation or generation != self._generation:
            return  # stale: a newer setting was asked for meanwhile
        self._shown_generation = generation
        started = self._requested_at.pop(generation, None)
        if started is not None:
            self.latencies.append(time.perf_counter() - started)
        self.result.emit(res)
        self._show_status(res)

    @property
    def shown_generation(self) -> int:
        return self._shown_generation

    @property
    def generation(self) -> int:
        return self._generation

    def _show_status(self, res: TuneResult) -> None:
        self._shown_text = (
            f"{res.n_objects} objects, assembly {res.seconds * 1000:.0f} ms ({res.backend})"
        )
        self.status.setText(self._shown_text)

    # -- buttons ----------------------------------------------------------------------------
    def reset(self) -> None:
        if self.tuner is None:
            return
        backend = self.tuner.model.card.backend
        self.backend.blockSignals(True)
        self.backend.setCurrentText(backend)
        self.backend.blockSignals(False)
        self._build_form(backend, self.tuner.defaults(backend))
        self.request()

    def command(self) -> str:
        """The CLI command that reproduces the current setting on the layer's file. For a
        layer with no file (a sample, a result of a script) it names ``IMAGE.tif`` and a
        shell comment after it says so."""
        if self.tuner is None or self.form is None:
            return ""
        backend = self.backend.currentText()
        text = cli_command(
            self.tuner.model.card.name,
            backend,
            self.form.values(),
            self.tuner.defaults(backend),
            image=self.image_path or NO_FILE,
            **self.run_options,
        )
        if self.image_path:
            return text
        layer = f"layer {self.layer_name!r}" if self.layer_name else "this layer"
        return f"{text}  # {layer} has no file: save it and put its path in place of {NO_FILE}"

    def copy_command(self) -> None:
        text = self.command()
        if text:
            QApplication.clipboard().setText(text)
            self.message.emit(f"copied: {text}")

    def save_defaults(self, directory: str | Path | None = None) -> Path | None:
        """Write a copy of the model (same weights) whose card holds the current knobs."""
        if self.tuner is None or self.form is None:
            return None
        name = f"{self.tuner.model.card.name}-tuned"
        path = export_model(
            self.tuner.model,
            directory or user_model_dir(),
            backend=self.backend.currentText(),
            knobs=self.form.values(),
            name=name,
            overwrite=True,
        )
        self.message.emit(f"saved tuned defaults as model {name!r} in {path.parent}")
        return path
