"""Train widget: fine-tune a model from the annotations in a background worker.

Picks a base model (shipped or an earlier fine-tune) whose method learns from sparse
labels, the annotation layers to learn from, and the few knobs that matter. Training runs in
a worker; the widget draws the loss and the held-out AP as they come, shows a preview of the
current model on the first image, and Stop keeps the best and latest checkpoints so the run
can be resumed. With "adapt to my images" the other open images (checked in a list) serve as
unannotated context. Afterwards it says how the new model differs from its base where the
user did not annotate, with warnings, and "apply to all open images" segments every open
image with the new model (and the base model, to count what changed). The result appears in
the Segment widget's model picker.
"""

from __future__ import annotations

import html
import math
import shutil
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QPointF, Signal
from qtpy.QtGui import QColor, QPainter, QPen, QPolygonF
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_instseg.core.arrays import InputError
from napari_instseg.core.axes import AxisChoice, image_for_model, labels_shape
from napari_instseg.core.finetune import (
    MIN_HELD_OUT_OBJECTS,
    AnnotatedImage,
    FinetuneConfig,
    FinetuneResult,
    UnannotatedImage,
    compare_labels,
    describe_comparison,
    describe_heldout,
    describe_refit,
    finetune,
    segment_with_both,
    unique_model_name,
)
from napari_instseg.core.jobs import Checkpoint, Metric, Preview, Progress
from napari_instseg.core.methods import get_method
from napari_instseg.core.pipeline import load_model
from napari_instseg.core.zoo import list_models, user_model_dir

from ._forms import KnobForm
from ._jobs import start_job
from ._layers import LayerChecklist, annotation_info, current_indices
from ._layout import ScrollingDock


def run_dir_for(name: str) -> Path:
    """Where the checkpoints of fine-tune ``name`` live (for Stop and Resume)."""
    return user_model_dir() / "runs" / name


class CurvePlot(QWidget):
    """A small line plot: training loss (left, blue) and held-out AP (0..1, orange)."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.loss: list[tuple[int, float]] = []
        self.ap: list[tuple[int, float]] = []
        self.setMinimumHeight(120)

    def clear(self) -> None:
        self.loss, self.ap = [], []
        self.update()

    def add(self, name: str, step: int, value: float) -> None:
        if not math.isfinite(value):
            return
        (self.loss if name == "loss" else self.ap).append((step, value))
        self.update()

    def paintEvent(self, _event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        w, h, m = self.width(), self.height(), 6
        painter.setPen(QPen(QColor(120, 120, 120)))
        painter.drawRect(m, m, w - 2 * m, h - 2 * m)
        steps = [s for s, _ in self.loss + self.ap]
        if not steps:
            painter.drawText(m + 4, h // 2, "loss and held-out AP appear here")
            return
        top = max(max(steps), 1)

        def points(series, lo, hi):
            span = (hi - lo) or 1.0
            return QPolygonF(
                [
                    QPointF(m + (w - 2 * m) * s / top, h - m - (h - 2 * m) * (v - lo) / span)
                    for s, v in series
                ]
            )

        if self.loss:
            values = [v for _, v in self.loss]
            painter.setPen(QPen(QColor(70, 140, 230), 2))
            painter.drawPolyline(points(self.loss, min(values), max(values)))
            painter.drawText(m + 4, m + 14, f"loss {values[-1]:.3f}")
        if self.ap:
            painter.setPen(QPen(QColor(240, 150, 40), 2))
            poly = points(self.ap, 0.0, 1.0)
            painter.drawPolyline(poly)
            for p in poly:
                painter.drawEllipse(p, 2.5, 2.5)
            painter.drawText(w - 140, m + 14, f"held-out AP {self.ap[-1][1]:.3f}")


class TrainWidget(ScrollingDock):
    """Dock widget: base model, annotations, knobs, Start / Stop / Resume, live curves."""

    finished = Signal(object)

    def __init__(self, viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.job = None
        self.result: FinetuneResult | None = None
        self.applied: dict[str, dict] = {}  # per image: compare_labels of the last apply
        self._published = None  # (base card, base name, model path) of the last fine-tune
        self._trained = None  # (base card, base name, FinetuneConfig) of the run in progress
        self._held_out = MIN_HELD_OUT_OBJECTS
        self._stop_text = ""
        self._cards: dict = {}
        self.setMinimumWidth(360)

        self.model_box = QComboBox()
        self.model_box.setToolTip("models whose method can learn from a few annotated objects")
        self.pairs = LayerChecklist(viewer, lambda layer: annotation_info(layer) is not None)
        self.pairs.setMinimumHeight(48)
        self.pairs.setMaximumHeight(90)
        self.pairs.setToolTip("annotation layers made with the Annotate widget")
        self.name = QLineEdit()
        self.name.setToolTip("name of the fine-tuned model (a new name starts a new run)")
        # the training knobs: a form made from FinetuneConfig (its ranges, labels, tooltips)
        self.form = KnobForm(FinetuneConfig)
        self.form.setObjectName("finetune_config")
        self.adapt_norm = self.form.editor("adapt_norm")
        self.context = LayerChecklist(viewer, self._is_context)
        self.context.setMinimumHeight(48)
        self.context.setMaximumHeight(90)
        self.context.setToolTip(
            "other open images, not annotated: used to adapt the statistics, and to compare "
            "the new model with the base model on"
        )
        self.context_label = QLabel("adapt to")
        self.start_button = QPushButton("Start")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.resume_button = QPushButton("Resume")
        self.apply_button = QPushButton("Apply to all open images")
        self.apply_button.setEnabled(False)
        self.apply_button.setToolTip(
            "segment every open image with the new model (and with the base model, to show "
            "how many objects changed)"
        )
        self.progress = QProgressBar()
        self.plot = CurvePlot()
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("base model", self.model_box)
        form.addRow("annotations", self.pairs)
        form.addRow("new model name", self.name)
        form.addRow(self.form)
        form.addRow(self.context_label, self.context)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(b)
        layout = QVBoxLayout(self.body)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.plot)
        layout.addWidget(self.apply_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.start_button.clicked.connect(lambda: self.start())
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.stop_button.clicked.connect(self.stop)
        self.apply_button.clicked.connect(self.apply_to_all)
        self.adapt_norm.toggled.connect(self._show_context)
        self._show_context(self.adapt_norm.isChecked())
        self.model_box.currentTextChanged.connect(self._model_changed)
        self.name.textChanged.connect(self._update_resume)
        self.refresh_models()

    # -- pickers ---------------------------------------------------------------------------
    def refresh_models(self) -> None:
        current = self.model_box.currentText()
        self._cards = {}
        for card, _ in list_models():
            try:
                if get_method(card.method).sparse_labels:
                    self._cards[card.name] = card
            except ValueError:
                continue
        names = list(self._cards)
        self.model_box.blockSignals(True)
        self.model_box.clear()
        self.model_box.addItems(names)
        if current in names:
            self.model_box.setCurrentText(current)
        elif "spoco-nuclei" in names:
            self.model_box.setCurrentText("spoco-nuclei")
        self.model_box.blockSignals(False)
        self._model_changed()

    def _model_changed(self, *_):
        base = self.model_box.currentText()
        if base:
            taken = [c.name for c, _ in list_models()]
            self.name.setText(unique_model_name(f"{base}-finetuned", taken))

    def _update_resume(self, *_):
        state = run_dir_for(self.name.text()) / "latest.state.safetensors"
        self.resume_button.setEnabled(self.job is None and state.exists())

    def refresh_layers(self, *_):
        """Re-read the layer lists (they also follow the viewer by themselves)."""
        self.pairs.refresh()
        self.context.refresh()

    def _is_context(self, layer) -> bool:
        """An open image without an annotation layer."""
        if not isinstance(layer, napari.layers.Image):
            return False
        return not any(
            (info := annotation_info(other)) and info.get("image") == layer.name
            for other in self.viewer.layers
        )

    def _show_context(self, on: bool) -> None:
        self.context_label.setVisible(on)
        self.context.setVisible(on)

    def context_layers(self) -> list[str]:
        """The unannotated images the fine-tune adapts to (none unless "adapt" is on)."""
        if not self.adapt_norm.isChecked():
            return []
        return [layer.name for layer in self.context.checked_layers()]

    def checked_layers(self) -> list[str]:
        """The names of the checked annotation layers."""
        return [layer.name for layer in self.pairs.checked_layers()]

    def config(self) -> FinetuneConfig:
        return self.form.config()

    def _say(self, text: str) -> None:
        self.status.setText(text)

    # -- running ---------------------------------------------------------------------------
    def _model_input(self, layer, card, ndim: int | None = None) -> tuple[np.ndarray, tuple]:
        """The layer's plane on screen, channels first, read the way the Segment widget reads
        layers (RGB kept as colour for the appearance step), and where its labels go."""
        return image_for_model(
            layer.data,
            ndim=ndim or card.ndim,
            in_channels=card.in_channels,
            rgb=layer.rgb,
            choice=AxisChoice(indices=current_indices(self.viewer, layer)),
            keep_rgb=True,
        )

    def _collect(self, card) -> list[AnnotatedImage]:
        """Copies of the checked annotation layers and their images (main thread)."""
        data = []
        for layer in self.pairs.checked_layers():
            image_name = annotation_info(layer)["image"]
            if image_name not in self.viewer.layers:
                raise InputError(f"the image {image_name!r} of {layer.name!r} is not open")
            annotation = np.array(layer.data, copy=True)
            image, _ = self._model_input(self.viewer.layers[image_name], card, annotation.ndim)
            data.append(AnnotatedImage(image_name, image, annotation, channel_axis=0))
        return data

    def _collect_context(self, card) -> list[UnannotatedImage]:
        """The checked context images as the model takes them (main thread)."""
        context = []
        if not self.adapt_norm.isChecked():
            return context
        for layer in self.context.checked_layers():
            try:
                image, _ = self._model_input(layer, card)
            except InputError as err:
                raise InputError(f"context image {layer.name!r}: {err}") from None
            context.append(UnannotatedImage(layer.name, image, channel_axis=0))
        return context

    def _visible_image(self, card) -> tuple[str, np.ndarray] | tuple[None, None]:
        """The image to preview on: the plane on screen of the top visible image layer that
        the model can take."""
        for layer in reversed(self.viewer.layers):
            if not isinstance(layer, napari.layers.Image) or not layer.visible:
                continue
            try:
                image, _ = self._model_input(layer, card)
            except InputError:
                continue
            return layer.name, image
        return None, None

    def start(self, *, resume: bool = False) -> None:
        if self.job is not None and self.job.running:
            return
        base, name = self.model_box.currentText(), self.name.text().strip()
        if not base or not name:
            self._say("choose a base model and a name for the new model")
            return
        card = self._cards[base]
        try:
            data = self._collect(card)
            context = self._collect_context(card)
        except InputError as err:
            self._say(f"cannot train: {err}")
            return
        if not data:
            self._say("no annotations checked: annotate some objects with the Annotate widget")
            return
        run_dir = run_dir_for(name)
        if not resume and run_dir.exists():
            shutil.rmtree(run_dir)
        config = self.config()
        self._trained = (card, base, config)
        self.plot.clear()
        self.progress.setRange(0, config.iterations)
        self.progress.setValue(0)
        self._held_out = MIN_HELD_OUT_OBJECTS
        self._set_running(
            True, "stopping after the current step; keeping the best and latest checkpoints"
        )
        self._say(f"{'resuming' if resume else 'starting'} {name!r} from {base!r}…")
        preview_name, preview = self._visible_image(card)

        def job():
            model = load_model(base)
            return finetune(
                model,
                data,
                name=name,
                run_dir=run_dir,
                config=config,
                preview=preview,
                preview_channel_axis=0,
                resume=resume,
                context=context,
            )

        self.job = start_job(
            job,
            on_event=lambda e: self._on_event(e, preview_name),
            on_done=self._done,
            on_error=self._failed,
        )

    def stop(self) -> None:
        if self.job is not None and self.job.running:
            self.job.stop()
            self.stop_button.setEnabled(False)
            self._say(self._stop_text)

    def _on_event(self, event, preview_name: str) -> None:
        if isinstance(event, Progress) and event.stage == "train":
            self.progress.setValue(event.step)
        elif isinstance(event, Progress) and event.step == 0 and event.stage != "predict":
            self._say(f"training done; {event.stage} ...")
        elif isinstance(event, Metric):
            if event.name == "loss":
                self.plot.add("loss", event.step, event.value)
            elif event.name == "heldout_objects":
                self._held_out = int(event.value)
                if self._held_out < MIN_HELD_OUT_OBJECTS:
                    self._say(
                        f"only {self._held_out} held-out object(s): the held-out AP cannot "
                        "judge this fine-tune"
                    )
            elif event.name in ("val_ap50", "heldout_ap50_before"):
                self.plot.add("ap", event.step, event.value)
                n = self._held_out
                note = f" (only {n} objects: no judgement)" if n < MIN_HELD_OUT_OBJECTS else ""
                self._say(f"step {event.step}: held-out AP@0.5 {event.value:.3f}{note}")
        elif isinstance(event, Checkpoint) and event.kind == "best":
            self._say(f"step {event.step}: new best checkpoint")
        elif isinstance(event, Preview):
            self._show_preview(preview_name, event.data)

    def _show_preview(self, image_name: str, labels: np.ndarray) -> None:
        name = f"{image_name} [fine-tune preview]"
        if name in self.viewer.layers:
            self.viewer.layers[name].data = labels
        else:
            layer = self.viewer.add_labels(labels, name=name, opacity=0.5)
            if image_name in self.viewer.layers:
                layer.scale = self.viewer.layers[image_name].scale[-labels.ndim :]

    def _set_running(self, running: bool, stop_text: str = "") -> None:
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.apply_button.setEnabled(not running and self._published is not None)
        self._stop_text = stop_text
        if running:
            self.resume_button.setEnabled(False)
        else:
            self.job = None
            self._update_resume()

    def _done(self, result: FinetuneResult) -> None:
        self.result = result
        card, base, config = self._trained
        if result.model_path is not None:
            self._published = (card, base, result.model_path)
        self._set_running(False)
        run = result.run
        ended = "stopped" if run.stopped else "finished"
        if result.model_path is None:
            self._say(f"{ended} before any checkpoint; nothing was saved")
        else:
            heldout = describe_heldout(result, held_out_fraction=config.held_out_fraction)
            text = (
                f"{ended} at step {run.iterations_done}: {heldout}; saved as model "
                f"{Path(result.model_path).stem!r} (in the Segment widget's list)"
            )
            if describe_refit(result.refit):
                text += (
                    f"\nre-chosen for it: {describe_refit(result.refit)} (best fit to your "
                    "objects and the base model's elsewhere)"
                )
            if result.comparison:
                text += f"\ncompared with {base}, " + describe_comparison(
                    result.comparison, per_image=True
                )
            text = html.escape(text, quote=False).replace("\n", "<br>")
            for warning in result.warnings:
                text += f"<br><b>warning:</b> {html.escape(warning, quote=False)}"
            self._say(text)
        self.finished.emit(result)

    def _failed(self, err: BaseException, what: str = "training") -> None:
        self._set_running(False)
        self._say(f"{what} failed: {err}")

    # -- apply to all open images ----------------------------------------------------------
    def apply_to_all(self) -> None:
        """Segment every open image layer (the plane on screen) with the new model, and with
        its base model to count what changed, in a worker; each image gets a Labels layer
        named as the Segment widget names them, ``IMAGE [MODEL]``."""
        if (self.job is not None and self.job.running) or self._published is None:
            return
        card, base, path = self._published
        images, places, skipped = [], {}, []
        for layer in self.viewer.layers:
            if not isinstance(layer, napari.layers.Image):
                continue
            try:
                image, where = self._model_input(layer, card)
            except InputError as err:
                skipped.append(f"{layer.name} skipped: {err}")
                continue
            images.append(UnannotatedImage(layer.name, image, channel_axis=0))
            places[layer.name] = (
                where,
                labels_shape(layer.data.shape, rgb=layer.rgb, channel_axis=None),
            )
        if not images:
            self._say("no open image that the model can take")
            return
        tuned_name, device = Path(path).stem, self.form.values()["device"]

        def job():
            parent, tuned = load_model(base), load_model(path)
            pairs = yield from segment_with_both(
                parent, tuned, images, device=device, stage="apply"
            )
            if pairs is None:
                return None
            return [
                (item.name, t, compare_labels([p], [t]))
                for item, (p, t) in zip(images, pairs, strict=True)
            ]

        self.progress.setRange(0, len(images))
        self.progress.setValue(0)
        self._set_running(True, "stopping; no layer will be changed")
        self._say(f"segmenting {len(images)} open image(s) with {tuned_name!r} and {base!r} ...")
        self.job = start_job(
            job,
            on_event=self._on_apply_event,
            on_done=lambda out: self._applied(out, tuned_name, places, skipped),
            on_error=lambda err: self._failed(err, "applying the new model"),
        )

    def _on_apply_event(self, event) -> None:
        if isinstance(event, Progress) and event.stage == "apply":
            self.progress.setValue(event.step)

    def _applied(self, out, tuned_name: str, places: dict, skipped: list[str]) -> None:
        self._set_running(False)
        if out is None:
            self._say("stopped; no layer was changed")
            return
        lines = []
        self.applied = {}
        for image_name, labels, stats in out:
            if image_name not in self.viewer.layers:
                lines.append(f"{image_name}: closed meanwhile, not written")
                continue
            self._write_labels(image_name, tuned_name, labels, *places[image_name])
            self.applied[image_name] = stats
            kept = stats["agreement"]
            lines.append(
                f"{image_name}: {stats['objects_tuned']} objects (parent had "
                f"{stats['objects_parent']}"
                + (f", {kept:.0%} of them found again)" if kept is not None else ")")
            )
        text = f"applied {tuned_name!r} to {len(out)} open image(s):\n" + "\n".join(lines + skipped)
        self._say(html.escape(text, quote=False).replace("\n", "<br>"))

    def _write_labels(
        self, image_name: str, model_name: str, labels: np.ndarray, where: tuple, shape: tuple
    ) -> None:
        """Put ``labels`` at ``where`` in the Labels layer ``IMAGE [MODEL]`` (made when
        missing)."""
        name = f"{image_name} [{model_name}]"
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(layer, napari.layers.Labels) and tuple(layer.data.shape) == tuple(shape):
            data = np.asarray(layer.data)
            data[where] = labels
            layer.data = data
            return
        if layer is not None:
            self.viewer.layers.remove(name)
        data = np.zeros(shape, np.uint32)
        data[where] = labels
        image = self.viewer.layers[image_name]
        self.viewer.add_labels(
            data,
            name=name,
            scale=image.scale[-data.ndim :],
            metadata={"model": model_name, "source_image": image_name},
        )
