"""Segment widget: pick a model, run it on an image layer in the background, tune live.

The widget only reads layers, builds configs, starts core jobs and writes layers; every
algorithm lives in ``napari_instseg.core``.
"""

from __future__ import annotations

import os

import napari
import numpy as np
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
)

from napari_instseg.core.appearance import APPEARANCES
from napari_instseg.core.arrays import InputError
from napari_instseg.core.axes import AxisChoice, image_for_model, labels_shape
from napari_instseg.core.checkpoint import CheckpointError
from napari_instseg.core.configs import knob_ranges
from napari_instseg.core.io.provenance import provenance
from napari_instseg.core.jobs import Progress
from napari_instseg.core.methods import get_method
from napari_instseg.core.modality import PHASE, detect_modality, mismatch_note, route_text
from napari_instseg.core.pipeline import (
    Model,
    describe_look,
    load_model,
    prepare_image,
    segment_image,
)
from napari_instseg.core.predict import DEVICES, PredictConfig
from napari_instseg.core.scale import (
    check_diameter,
    equivalent_diameters,
    estimate_diameter,
    median_diameter,
)
from napari_instseg.core.tuning import Tuner, TuneResult
from napari_instseg.core.visualise import embedding_to_rgb, vectors_to_rgb
from napari_instseg.core.zoo import list_models

from ._jobs import call_in_worker, start_job
from ._layers import LayerPicker, current_indices
from ._layout import ScrollingDock
from .tune_widget import TunePanel

INTERMEDIATE_COLORMAPS = {
    "foreground": "gray",
    "interior": "magma",
    "boundary": "inferno",
    "seediness": "magma",
}
#: Intermediate arrays that are displacement fields, shown as direction colours.
VECTOR_FIELDS = ("offsets", "flow")
#: Learnt pixel embeddings, shown as RGB of their first three principal components.
EMBEDDING_FIELDS = ("pixel_embedding",)
#: Preselected for images that do not look like phase contrast, when installed: nuclei in
#: fluorescence and in stained brightfield.
GENERALIST = "generalist-nuclei"


def describe_card(card) -> str:
    """A short human summary of a model card for the picker."""
    aps = card.test_ap50()
    texts = {name: "not measured" if ap is None else f"{ap:.3f}" for name, ap in aps.items()}
    if len(texts) == 1:
        ap_text = next(iter(texts.values()))
    else:  # one model for several datasets: each one's AP
        ap_text = ", ".join(f"{text} ({name})" for name, text in texts.items())
    size = f"{card.object_size:.0f} px" if card.object_size else "unknown"
    data = card.training.get("data", "?")
    split = card.training.get("split", "")
    if split:  # a fine-tune made in napari has no named split
        data = f"{data} ({split})"
    parent = f"<br>fine-tuned from <b>{card.parent}</b>" if card.parent else ""
    return (
        f"<b>{card.name}</b>: {card.method} ({card.ndim}D, {card.in_channels} channel)<br>"
        f"modality: {card.modality or 'any'}; typical object: {size}<br>"
        f"trained on: {data}; "
        f"test AP@0.5: {ap_text}{parent}"
    )


def layer_modality(layer, side: int = 1024) -> str:
    """The imaging modality an image layer looks like (one of
    :data:`~napari_instseg.core.modality.MODALITIES`), from the centre (at most ``side``
    pixels a side: cheap for lazy, chunked data too) of its first plane."""
    data = layer.data[-1] if layer.multiscale else layer.data
    n = data.ndim - (1 if layer.rgb else 0)
    centre = tuple(
        slice(max(0, (size - side) // 2), max(0, (size - side) // 2) + side)
        for size in data.shape[n - 2 : n]
    )
    sample = np.asarray(data[(0,) * (n - 2) + centre])
    return detect_modality(sample, channel_axis=-1 if layer.rgb else None).modality


def _best_ap(card) -> float:
    measured = [ap for ap in card.test_ap50().values() if ap is not None]
    return max(measured, default=-1.0)


def preferred_model(cards, modality: str | None) -> str | None:
    """The model to offer first for an image of ``modality`` (None: no image yet).

    :data:`GENERALIST` (nuclei in fluorescence and stained brightfield) for every image that
    is not phase contrast, when installed; otherwise the model trained on ``modality`` with
    the best test AP@0.5, then the best model for any modality (no modality on its card),
    then the first in the list. ``cards`` is a sequence of model cards in list order."""
    cards = list(cards)
    if not cards:
        return None
    names = [card.name for card in cards]
    if GENERALIST in names and modality != PHASE:
        return GENERALIST
    for wanted in (modality, ""):
        fitting = [card for card in cards if modality and (card.modality or "") == wanted]
        if fitting:
            return max(fitting, key=_best_ap).name  # max keeps the first of equals
    return names[0]


def line_diameter(shapes, image_layer) -> tuple[float | None, str]:
    """The median length, in pixels of ``image_layer``, of the selected lines or paths of a
    Shapes layer (in the Y/X plane), else of the last one drawn; and what was measured."""
    lines = [i for i, kind in enumerate(shapes.shape_type) if kind in ("line", "path")]
    if not lines:
        return None, f"{shapes.name!r} has no line"
    chosen = sorted(set(lines) & set(shapes.selected_data))
    ratio = np.asarray(shapes.scale[-2:], np.float64)
    if image_layer is not None:
        ratio = ratio / np.asarray(image_layer.scale[-2:], np.float64)
    lengths = []
    for i in chosen or lines[-1:]:
        vertices = np.asarray(shapes.data[i], np.float64)[:, -2:] * ratio
        lengths.append(np.linalg.norm(np.diff(vertices, axis=0), axis=1).sum())
    if len(chosen) > 1:
        what = f"median length of {len(chosen)} selected lines"
    else:
        what = "length of the selected line" if chosen else "length of the last line drawn"
    return float(np.median(lengths)), f"{what} in {shapes.name!r}"


def labels_diameter(viewer, labels) -> tuple[float | None, str]:
    """The equivalent diameter of a Labels layer's selected label, else the median over its
    objects, on the plane on screen; and what was measured."""
    data = labels.data[0] if labels.multiscale else labels.data
    where = current_indices(viewer, labels)
    plane = np.asarray(data[tuple(where[ax] for ax in range(labels.ndim - 2))])
    label = labels.selected_label
    if label > 0 and np.any(plane == label):
        size = equivalent_diameters((plane == label).astype(np.uint8))[0]
        return float(size), f"equivalent diameter of label {label} in {labels.name!r}"
    size = median_diameter([plane])
    if size is None:
        return None, f"{labels.name!r} has no objects on this plane"
    return size, f"median equivalent diameter of the objects in {labels.name!r}"


def measure_diameter(viewer, image_layer) -> tuple[float | None, str]:
    """An object diameter (pixels of ``image_layer``) measured on the viewer's layers, and
    what was measured: on the active Labels or Shapes layer, else on the topmost Shapes layer
    with a line."""
    active = viewer.layers.selection.active
    if isinstance(active, napari.layers.Labels):
        return labels_diameter(viewer, active)
    if isinstance(active, napari.layers.Shapes):
        return line_diameter(active, image_layer)
    for layer in reversed(viewer.layers):
        kinds = layer.shape_type if isinstance(layer, napari.layers.Shapes) else []
        if {"line", "path"} & set(kinds):
            return line_diameter(layer, image_layer)
    return None, "draw a line across an object in a Shapes layer, or select a Labels layer"


class _ModelBox(QComboBox):
    """A combo box that re-reads the model folders each time it opens, so models saved
    meanwhile (fine-tunes, tuned copies) show up."""

    def __init__(self, refresh, parent=None):
        super().__init__(parent)
        self._refresh = refresh

    def showPopup(self) -> None:
        self._refresh()
        super().showPopup()


class SegmentWidget(ScrollingDock):
    """Dock widget: model picker, input and axis choice, run/cancel, tune panel."""

    def __init__(self, viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.model: Model | None = None
        self.job = None
        self.labels_layer = None
        self._where: tuple = ()
        self._cards: dict = {}
        self.setMinimumWidth(360)

        self.model_box = _ModelBox(lambda: self.refresh_models())
        self.model_box.setObjectName("model")
        self.card_label = QLabel()
        self.card_label.setWordWrap(True)
        self.image_box = LayerPicker(viewer, lambda layer: isinstance(layer, napari.layers.Image))
        self.image_box.setObjectName("image")
        self.channel_axis = QComboBox()
        self.channel_axis.setToolTip("axis of the layer that holds channels (not RGB colour)")
        self.channel = QSpinBox()
        self.channel.setRange(-1, 64)
        self.channel.setSpecialValueText("all / grey")
        self.channel.setValue(-1)
        self.channel.setToolTip(
            "keep one channel; for RGB layers 'all / grey' gives the colours to the appearance "
            "step (stain unmixing, or grey)"
        )
        self.diameter = QLineEdit("auto")
        self.diameter.setObjectName("diameter")
        self.diameter.setToolTip(
            "the objects' diameter in pixels: the image is resized so they have the size the "
            "model works best at. 'auto' estimates it (for models whose card has a working "
            "diameter), 'off' keeps the native scale"
        )
        self.estimate_button = QPushButton("estimate")
        self.estimate_button.setToolTip("estimate the diameter from the image (no network)")
        self.measure_button = QPushButton("measure")
        self.measure_button.setToolTip(
            "the length of a line drawn across an object in a Shapes layer, or the size of the "
            "selected label (or the median object) of the selected Labels layer"
        )
        self.appearance = QComboBox()
        self.appearance.addItems(list(APPEARANCES))
        self.appearance.setToolTip(
            "how the image is made to look like the model's training images: auto decides; "
            "as-is (colour to grey only); invert (dark objects on a bright background); "
            "stain (haematoxylin of stained colour images)"
        )
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        tile = knob_ranges(PredictConfig)["tile_size"]
        self.tile_size = QSpinBox()
        self.tile_size.setRange(tile["min"], tile["max"])
        self.tile_size.setSingleStep(64)
        self.tile_size.setValue(PredictConfig.tile_size)
        self.tile_size.setToolTip(tile["tooltip"])
        self.tta = QCheckBox("test-time augmentation")
        self.intermediate = QCheckBox("add intermediate layers")
        self.run_button = QPushButton("Segment")
        self.run_button.setObjectName("run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.tune = TunePanel()
        self.large = LargeImageBox()

        form = QFormLayout()
        form.addRow("model", self.model_box)
        form.addRow(self.card_label)
        form.addRow("image", self.image_box)
        form.addRow("channel axis", self.channel_axis)
        form.addRow("channel", self.channel)
        size = QHBoxLayout()
        size.addWidget(self.diameter)
        size.addWidget(self.estimate_button)
        size.addWidget(self.measure_button)
        form.addRow("diameter", size)
        form.addRow("appearance", self.appearance)
        form.addRow("device", self.device)
        form.addRow("tile size", self.tile_size)
        form.addRow(self.tta)
        form.addRow(self.intermediate)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self.body)
        layout.addLayout(form)
        layout.addWidget(self.large)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.tune)
        layout.addStretch(1)

        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.image_box.layer_changed.connect(self._image_changed)
        self.image_box.layer_changed.connect(self._preselect_model)
        self.estimate_button.clicked.connect(self.estimate)
        self.measure_button.clicked.connect(self.measure)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.tune.result.connect(self._show_tuned)
        self.tune.message.connect(self._say)
        self.refresh_models()
        self._preselected = self.model_box.currentText()
        self._image_changed()
        self._preselect_model()

    # -- pickers ---------------------------------------------------------------------------
    def refresh_models(self) -> None:
        current = self.model_box.currentText()
        self._cards = {card.name: (card, path) for card, path in list_models()}
        self.model_box.blockSignals(True)
        self.model_box.clear()
        self.model_box.addItems(list(self._cards))
        if current in self._cards:
            self.model_box.setCurrentText(current)
        self.model_box.blockSignals(False)
        if self.model_box.currentText() != current or not current:
            self._model_changed()

    def _model_changed(self, *_):
        entry = self._cards.get(self.model_box.currentText())
        self.model = None
        if entry is None:
            self.card_label.setText("no models found")
            return
        card, _ = entry
        self.card_label.setText(describe_card(card))
        if self.diameter.text().strip() in ("auto", "off", ""):
            self.diameter.setText("auto" if card.working_diameter else "off")
        try:
            supports_tta = get_method(card.method).supports_tta
        except ValueError:
            supports_tta = False
        self.tta.setEnabled(supports_tta)
        if not supports_tta:
            self.tta.setChecked(False)
        self.tta.setToolTip(
            "average the network over flips and 90-degree rotations (8 in 2D, 16 in 3D): "
            "slower, usually a little more accurate"
            if supports_tta
            else "this method has no test-time augmentation"
        )
        self._image_changed()

    def refresh_layers(self, *_):
        """Re-read the image picker (it also follows the viewer by itself)."""
        self.image_box.refresh()

    def _preselect_model(self, *_) -> None:
        """While the model is still the widget's own choice (the user has not picked one),
        take :func:`preferred_model` for the chosen image's modality."""
        if self.model_box.currentText() != self._preselected:
            return
        layer = self.image_layer()
        modality = None if layer is None else layer_modality(layer)
        chosen = preferred_model([card for card, _ in self._cards.values()], modality)
        if chosen is None:
            return
        self._preselected = chosen
        self.model_box.setCurrentText(chosen)

    def _image_changed(self, *_):
        layer = self.image_layer()
        self.channel_axis.clear()
        self.channel_axis.addItem("none", None)
        entry = self._cards.get(self.model_box.currentText())
        if layer is None or entry is None:
            return
        n = layer.data.ndim - (1 if layer.rgb else 0)
        for ax in range(max(0, n - entry[0].ndim)):
            self.channel_axis.addItem(f"axis {ax} (size {layer.data.shape[ax]})", ax)

    def image_layer(self):
        return self.image_box.layer()

    # -- running ---------------------------------------------------------------------------
    def axis_choice(self, layer) -> AxisChoice:
        channel = self.channel.value()
        return AxisChoice(
            self.channel_axis.currentData(),
            None if channel < 0 else channel,
            current_indices(self.viewer, layer),
        )

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _model_input(self, layer, card) -> tuple[np.ndarray, tuple]:
        """The layer's plane as ``segment_image`` takes it (RGB kept as colour unless a
        channel is chosen) and where its labels go."""
        return image_for_model(
            layer.data,
            ndim=card.ndim,
            in_channels=card.in_channels,
            rgb=layer.rgb,
            choice=self.axis_choice(layer),
            keep_rgb=True,
        )

    def _cached_model(self, card) -> Model | None:
        return self.model if self.model is not None and self.model.card.name == card.name else None

    def _chosen(self):
        """``(layer, card, path)`` of the chosen image layer and model, or None (said)."""
        layer = self.image_layer()
        entry = self._cards.get(self.model_box.currentText())
        if layer is None or entry is None:
            self._say("choose an image layer and a model first")
            return None
        return (layer, *entry)

    def estimate(self) -> None:
        """Fill the diameter field with a quick estimate on the image (no network), in a
        worker."""
        chosen = self._chosen()
        if chosen is None:
            return
        layer, card, path = chosen
        try:
            image, _ = self._model_input(layer, card)
        except InputError as err:
            self._say(f"cannot use layer {layer.name!r}: {err}")
            return
        cached, appearance = self._cached_model(card), self.appearance.currentText()

        def work():
            model = cached or load_model(str(path))
            x = prepare_image(model, image, channel_axis=0, appearance=appearance)
            return model, estimate_diameter(x)

        self._say("estimating the object diameter ...")
        call_in_worker(
            work,
            on_done=self._estimated,
            on_error=lambda err: self._say(f"cannot estimate the diameter: {err}"),
        )

    def _estimated(self, out) -> None:
        model, est = out
        if model.card.name == self.model_box.currentText():
            self.model = model
        if est.diameter is None:
            self._say(f"no diameter estimate: {est.reason}")
            return
        self.diameter.setText(f"{est.diameter:.1f}")
        self._say(f"estimated diameter {est.diameter:.1f} px ({est.reason})")

    def measure(self) -> None:
        """Fill the diameter field from a line drawn in a Shapes layer or from a Labels layer."""
        size, what = measure_diameter(self.viewer, self.image_layer())
        if size is None:
            self._say(f"nothing to measure: {what}")
            return
        self.diameter.setText(f"{size:.1f}")
        self._say(f"measured diameter {size:.1f} px: {what}")

    def run(self) -> None:
        """Segment the chosen layer with the chosen model in a worker."""
        chosen = self._chosen()
        if chosen is None:
            return
        layer, card, path = chosen
        if self.large.isChecked():
            try:
                diameter = check_diameter(self.diameter.text())
            except InputError as err:
                self._say(str(err))
                return
            self.run_large(layer, card, path, diameter, self.appearance.currentText())
            return
        try:
            image, where = self._model_input(layer, card)
        except InputError as err:
            self._say(f"cannot use layer {layer.name!r}: {err}")
            return
        try:
            diameter = check_diameter(self.diameter.text(), image.shape[1:])
        except InputError as err:
            self._say(str(err))
            return
        appearance = self.appearance.currentText()
        config = PredictConfig(
            tile_size=self.tile_size.value(),
            device=self.device.currentText(),
            tta=self.tta.isEnabled() and self.tta.isChecked(),
        )
        image_name, cax = layer.name, self.channel_axis.currentData()
        source = getattr(layer.source, "path", None)
        source = os.path.abspath(source) if source else None  # the CLI may run elsewhere
        shape = labels_shape(layer.data.shape, rgb=layer.rgb, channel_axis=cax)
        cached = self._cached_model(card)
        options = {"diameter": diameter, "appearance": appearance}

        def job():
            model = cached or load_model(str(path))
            seg = yield from segment_image(model, image, config=config, channel_axis=0, **options)
            if seg is None:
                return None
            tuner = Tuner(model, seg.prediction, seg.intermediate)
            first = TuneResult(
                seg.labels,
                seg.backend,
                tuner.defaults(seg.backend),
                int(seg.labels.max()),
                seg.seconds["assemble"],
                seg.report,
            )
            return tuner, first, seg.seconds

        self._start(
            job,
            f"segmenting {image_name} with {card.name} ...",
            lambda out: self._finished(out, image_name, where, shape, source, options),
        )

    def _start(self, job, text: str, on_done) -> None:
        """Run ``job`` in a worker with Run disabled and Cancel enabled until it ends."""
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        self._say(text)
        self.job = start_job(job, on_event=self._on_event, on_done=on_done, on_error=self._failed)

    def cancel(self) -> None:
        if self.job is not None and self.job.running:
            self.job.stop()
            self._say("cancelling ...")

    def _on_event(self, event) -> None:
        if isinstance(event, Progress):
            self.progress.setMaximum(event.total)
            self.progress.setValue(event.step)
            unit = "tiles" if event.stage == "predict" else "blocks"
            self.progress.setFormat(f"{event.stage} %v/%m {unit}")

    # -- large images: blockwise on dask.distributed ----------------------------------------
    def run_large(self, layer, card, path, diameter="auto", appearance="auto") -> None:
        """Segment ``layer`` block by block into an OME-Zarr next to its source, in a
        worker; the result opens as a (multiscale, lazy) labels layer."""
        import shutil
        from pathlib import Path

        from napari_instseg.core.large.engine import segment_large
        from napari_instseg.core.large.source import source_for

        output = Path(self.large.output_for(layer))
        cax = self.channel_axis.currentData()
        data = layer.data[0] if layer.multiscale else layer.data
        file = getattr(layer.source, "path", None)
        settings = self.large.settings(card.ndim)
        config = PredictConfig(tile_size=self.tile_size.value(), device=self.device.currentText())
        image_name = layer.name

        def job():
            # in memory (or not a file we read): staged next to the output for the workers
            staging = output.with_name(output.name + ".input.zarr")
            source, staged = source_for(data, file, staging, channel_axis=cax)
            result = yield from segment_large(
                source,
                output,
                str(path),
                predict=config,
                diameter=diameter,
                appearance=appearance,
                source_image=image_name,
                **settings,
            )
            if result is not None and staged is not None:
                shutil.rmtree(staged, ignore_errors=True)  # the OME-Zarr holds the image now
            return result

        self._start(
            job,
            f"segmenting {image_name} block by block with {card.name} into {output} ...",
            lambda res: self._finished_large(res, image_name, card.name, output),
        )

    def _finished_large(self, result, image_name: str, model_name: str, output) -> None:
        from .reader import read_ome_zarr_layers

        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if result is None:
            self._say(
                f"cancelled; the blocks already done are kept in {output}.blocks and the next "
                "run with the same settings resumes from them"
            )
            return
        name = f"{image_name} [{model_name}]"
        for data, meta, kind in read_ome_zarr_layers(str(output)):
            if kind != "labels" or meta["name"] != "labels":
                continue
            if name in self.viewer.layers:
                self.viewer.layers.remove(name)
            meta = {**meta, "name": name}  # the metadata is the output's provenance
            meta.pop("scale", None)
            self.labels_layer = self.viewer.add_labels(data, **meta)
        text = f"{result.summary()}; written to {output} ({result.seconds['total']:.0f} s)"
        self._say(text + (f"\n{result.look_text()}" if result.look_text() else ""))

    def _failed(self, err: BaseException) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        kind = "model" if isinstance(err, CheckpointError) else "run"
        self._say(f"{kind} failed: {err}")

    def _finished(
        self,
        out,
        image_name: str,
        where: tuple,
        shape: tuple,
        source: str | None,
        options: dict,
    ) -> None:
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        if out is None:
            self.progress.setValue(0)
            self._say("cancelled; nothing was changed")
            return
        tuner, result, seconds = out
        self.model = tuner.model
        self._where = where
        self._write_labels(tuner, result, image_name, shape)
        if self.intermediate.isChecked():
            self._write_intermediate(tuner, image_name, shape, result.labels.shape)
        self.tune.set_tuner(tuner, result, source, layer_name=image_name, **options)
        text = (
            f"{result.n_objects} objects (prediction {seconds['predict']:.1f} s, "
            f"assembly {seconds['assemble'] * 1000:.0f} ms, total {seconds['total']:.1f} s)"
            f"\n{describe_look(tuner.prediction.info)}"
        )
        if result.report.get("route"):
            defaults = tuner.defaults(result.backend)
            text += f"\n{route_text(result.report, result.knobs, defaults)}"
        note = mismatch_note(tuner.prediction.info, tuner.model.card)
        if note:
            text += f"\nnote: this image {note}"
        self._say(text)

    # -- layers (main thread only) ------------------------------------------------------
    def _placed(self, plane: np.ndarray, shape: tuple, dtype) -> np.ndarray:
        if tuple(plane.shape) == tuple(shape):
            return plane
        full = np.zeros(shape, dtype)
        full[self._where] = plane
        return full

    def _provenance(self, tuner: Tuner, result: TuneResult, image_name: str) -> dict:
        """The labels layer's metadata: how they were made (the record ``segment`` writes
        too) and which plane of the layer they fill."""
        how = provenance(
            tuner.model,
            backend=result.backend,
            knobs=result.knobs,
            info=tuner.prediction.info,
            report=result.report,
            source_image=image_name,
        )
        return {**how, "plane": repr(self._where)}

    def _write_labels(self, tuner: Tuner, result: TuneResult, image_name: str, shape: tuple):
        name = f"{image_name} [{self.model.card.name}]"
        meta = self._provenance(tuner, result, image_name)
        if name in self.viewer.layers and isinstance(
            self.viewer.layers[name], napari.layers.Labels
        ):
            layer = self.viewer.layers[name]
            if tuple(layer.data.shape) == tuple(shape):
                data = np.asarray(layer.data)
                data[self._where] = result.labels
                layer.data = data
                layer.metadata.update(meta)
                self.labels_layer = layer
                return
            self.viewer.layers.remove(name)
        self.labels_layer = self.viewer.add_labels(
            self._placed(result.labels, shape, np.uint32), name=name, metadata=meta
        )

    def _show_tuned(self, result: TuneResult) -> None:
        layer, tuner = self.labels_layer, self.tune.tuner
        if layer is None or layer not in self.viewer.layers or tuner is None:
            return
        data = np.asarray(layer.data)
        data[self._where] = result.labels
        layer.data = data
        source = layer.metadata.get("source_image") or self.tune.layer_name or ""
        layer.metadata.update(self._provenance(tuner, result, source))

    def _write_intermediate(
        self, tuner: Tuner, image_name: str, shape: tuple, plane: tuple
    ) -> None:
        """Scalar maps as image layers; 2D vector fields (offsets) as direction colours and 2D
        pixel embeddings by their principal components. Arrays that are not maps of the
        prediction's grid (e.g. a list of affinity offsets) are skipped. A prediction on a
        resized grid (``diameter``) is shown scaled onto the segmented ``plane``, pixel
        centres aligned as :func:`~napari_instseg.core.scale.labels_to_grid` maps labels."""
        plain = not any(isinstance(w, int) for w in self._where)
        spatial = len(self._where) - sum(isinstance(w, int) for w in self._where)
        grid = tuple(tuner.prediction.image_shape)
        extra = len(shape) - spatial
        factors = [n / m for n, m in zip(plane, grid, strict=True)]
        scale = [1.0] * extra + factors
        translate = [0.0] * extra + [(f - 1.0) / 2 for f in factors]
        full = tuple(shape[:extra]) + grid
        for key, array in tuner.intermediate.items():
            if tuple(array.shape[-spatial:]) != grid:
                continue
            name = f"{image_name} [{self.model.card.name}] {key}"
            if array.ndim == spatial:
                data = self._placed(array.astype(np.float32), full, np.float32)
                kwargs = {"colormap": INTERMEDIATE_COLORMAPS.get(key, "gray")}
            elif key in VECTOR_FIELDS and plain and array.shape[0] == 2 == spatial:
                data, kwargs = vectors_to_rgb(array), {"rgb": True}
            elif key in EMBEDDING_FIELDS and plain and spatial == 2:
                data, kwargs = embedding_to_rgb(array), {"rgb": True}
            else:
                continue
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                layer.data, layer.scale, layer.translate = data, scale, translate
            else:
                self.viewer.add_image(
                    data,
                    name=name,
                    blending="additive",
                    visible=False,
                    scale=scale,
                    translate=translate,
                    **kwargs,
                )


class LargeImageBox(QGroupBox):
    """Settings of "large image" mode: blockwise on dask.distributed into an OME-Zarr."""

    def __init__(self, parent=None):
        super().__init__("large image: blockwise into OME-Zarr", parent)
        self.setCheckable(True)
        self.setChecked(False)
        self.setToolTip(
            "for images larger than memory: the image is read block by block, each block is "
            "segmented on a dask worker and objects are stitched across blocks. Progress per "
            "block; Cancel keeps the blocks done and the next run resumes from them."
        )
        self.output = QLineEdit()
        self.output.setPlaceholderText("next to the image: NAME.ome.zarr")
        self.output.setToolTip("an .ome.zarr folder (image + labels pyramids) or a .zarr array")
        self.block = QSpinBox()
        self.block.setRange(0, 16384)
        self.block.setSingleStep(256)
        self.block.setSpecialValueText("auto")
        self.block.setValue(0)
        self.block.setToolTip(
            "block core per axis (Y and X). auto: wide enough that the halos (from the "
            "model's object size) add at most 25 % work"
        )
        self.workers = QSpinBox()
        self.workers.setRange(1, 256)
        self.workers.setValue(max(1, os.cpu_count() or 1))
        self.workers.setToolTip("workers of the local cluster (one thread each)")
        self.scheduler = QLineEdit()
        self.scheduler.setPlaceholderText("local cluster")
        self.scheduler.setToolTip("address of a running dask scheduler, e.g. tcp://host:8786")
        self.overwrite = QCheckBox("replace an existing output")
        form = QFormLayout(self)
        form.addRow("output", self.output)
        form.addRow("block", self.block)
        form.addRow("workers", self.workers)
        form.addRow("scheduler", self.scheduler)
        form.addRow(self.overwrite)

    def output_for(self, layer) -> str:
        """The output path: as typed, or ``<image name>.ome.zarr`` next to the layer's file
        (or in the home folder for layers without one)."""
        from pathlib import Path

        text = self.output.text().strip()
        if text:
            return text
        file = getattr(layer.source, "path", None)
        folder = Path(file).parent if file else Path.home()
        stem = Path(file).name.split(".")[0] if file else layer.name
        return str(folder / f"{stem}.ome.zarr")

    def settings(self, ndim: int = 2) -> dict:
        """Keyword arguments of :func:`~napari_instseg.core.large.engine.segment_large`.
        In 3D the block is 64 planes of a quarter of the Y/X side (64 x 512 x 512 for 2048)."""
        scheduler = self.scheduler.text().strip()
        side = self.block.value()
        if side == 0:
            core = None
        elif ndim == 2:
            core = side
        else:
            core = (64, max(16, side // 4), max(16, side // 4))
        return {
            "core": core,
            "client": scheduler or None,
            "n_workers": self.workers.value(),
            "overwrite": self.overwrite.isChecked(),
        }
