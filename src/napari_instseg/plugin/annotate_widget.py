"""Annotate widget: paint a few whole objects (and known background) for fine-tuning.

The annotation is a Labels layer paired with an image: 0 = not annotated, the reserved
background id = painted background, any other id = one object. It is autosaved to a project
folder (zarr) shortly after every stroke, and again whenever its content changed (undo,
scripts), and it comes back by itself when the same image is opened again.
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from napari_instseg.core.arrays import InputError
from napari_instseg.core.data.sparse import (
    BACKGROUND_LABEL,
    annotation_counts,
    copy_objects,
    next_object_id,
)
from napari_instseg.core.project import Project, default_project_path, image_key

from ._layers import ANNOTATION_KEY, LayerPicker, annotation_info
from ._layout import ScrollingDock

SAVE_DELAY_MS = 400
CHECK_EVERY_MS = 5000
#: Images up to this many pixels are looked up in the project when they are opened.
RESTORE_MAX_PIXELS = 64 * 2**20


def _spatial_shape(layer) -> tuple[int, ...]:
    """Shape of the layer's pixels without the RGB(A) axis: the annotation's shape."""
    shape = tuple(layer.data.shape)
    return shape[:-1] if layer.rgb else shape


class _Autosave:
    """Debounced saving of one annotation layer into its project entry."""

    def __init__(self, layer, project: Project, key: str, on_saved):
        self.layer, self.project, self.key, self.on_saved = layer, project, key, on_saved
        self.region: tuple[slice, ...] | None = None
        self.full = False
        self.checksum = self._checksum()
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(SAVE_DELAY_MS)
        self.timer.timeout.connect(self.flush)
        self.watch = QTimer()
        self.watch.setInterval(CHECK_EVERY_MS)
        self.watch.timeout.connect(self._check)
        self.watch.start()
        layer.events.paint.connect(self._painted)
        layer.events.data.connect(self._replaced)

    def _checksum(self) -> int:
        return zlib.crc32(np.ascontiguousarray(self.layer.data).data)

    def _painted(self, event) -> None:
        for atom in event.value or []:
            box = getattr(atom, "slice_key", None)
            if box is None and isinstance(atom, tuple) and len(atom[0]) and atom[0][0].size:
                box = tuple(slice(int(ix.min()), int(ix.max()) + 1) for ix in atom[0])
            if box is None:
                self.full = True
                continue
            self.region = (
                box
                if self.region is None
                else tuple(
                    slice(min(a.start, b.start), max(a.stop, b.stop))
                    for a, b in zip(self.region, box, strict=True)
                )
            )
        self.timer.start()

    def _replaced(self, _event=None) -> None:
        self.full = True
        self.timer.start()

    def _check(self) -> None:
        if self._checksum() != self.checksum:
            self._replaced()

    def flush(self) -> None:
        """Write what changed since the last save (everything when unsure)."""
        self.timer.stop()
        data = np.asarray(self.layer.data)
        region = None if self.full else self.region
        if region is None and not self.full and self._checksum() == self.checksum:
            return
        self.project.save_annotations(self.key, data, region=region)
        self.region, self.full = None, False
        self.checksum = self._checksum()
        self.on_saved()

    def close(self) -> None:
        self.flush()
        self.watch.stop()
        self.layer.events.paint.disconnect(self._painted)
        self.layer.events.data.disconnect(self._replaced)


class AnnotateWidget(ScrollingDock):
    """Dock widget: pair an annotation layer with an image, paint, count, autosave."""

    def __init__(self, viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.project: Project | None = None
        self._autosaves: dict = {}  # annotation layer -> its _Autosave
        self.setMinimumWidth(340)

        self.image_box = LayerPicker(viewer, lambda layer: isinstance(layer, napari.layers.Image))
        self.project_path = QLineEdit(str(default_project_path()))
        self.project_path.setToolTip("zarr folder where annotations are saved as you paint")
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(self._browse)
        self.annotate_button = QPushButton("Annotate this image")
        self.new_button = QPushButton("New object")
        self.new_button.setToolTip("paint a new object with the next free id")
        self.background_button = QPushButton("Background")
        self.background_button.setToolTip(
            f"paint pixels known to be background (id {BACKGROUND_LABEL}); unpainted pixels "
            "stay unknown and are ignored by training"
        )
        self.counts = QLabel("")
        # autosaving has a line of its own, so it does not hide what the last action said
        self.saved = QLabel("")
        self.saved.setWordWrap(True)
        self.prediction_box = LayerPicker(
            viewer,
            lambda layer: isinstance(layer, napari.layers.Labels) and not annotation_info(layer),
        )
        self.prediction_box.setToolTip("a predicted Labels layer to copy objects from")
        self.ids = QLineEdit()
        self.ids.setPlaceholderText("ids, e.g. 3, 17 (empty: the layer's selected label)")
        self.copy_button = QPushButton("Copy objects")
        self.click_copy = QCheckBox("click on objects to copy them")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("image", self.image_box)
        path_row = QHBoxLayout()
        path_row.addWidget(self.project_path)
        path_row.addWidget(browse)
        form.addRow("project", path_row)
        paint = QHBoxLayout()
        paint.addWidget(self.new_button)
        paint.addWidget(self.background_button)
        start = QFormLayout()
        start.addRow("prediction", self.prediction_box)
        start.addRow("objects", self.ids)
        start.addRow(self.copy_button)
        start.addRow(self.click_copy)
        layout = QVBoxLayout(self.body)
        layout.addLayout(form)
        layout.addWidget(self.annotate_button)
        layout.addLayout(paint)
        layout.addWidget(self.counts)
        layout.addWidget(self.saved)
        layout.addWidget(QLabel("<b>Start from prediction</b>"))
        layout.addLayout(start)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.annotate_button.clicked.connect(lambda: self.annotate())
        self.new_button.clicked.connect(self.new_object)
        self.background_button.clicked.connect(self.paint_background)
        self.copy_button.clicked.connect(lambda: self.copy_from_prediction())
        self.click_copy.toggled.connect(self._toggle_click_copy)
        viewer.layers.events.inserted.connect(self._inserted)
        viewer.layers.events.removed.connect(self._removed)

    # -- pickers -------------------------------------------------------------------------
    def refresh_layers(self, *_):
        """Re-read the pickers (they also follow the viewer by themselves)."""
        self.image_box.refresh()
        self.prediction_box.refresh()

    def _image(self, image=None):
        """The image layer ``image`` (a layer or a layer's name; default: the chosen one)."""
        if image is None:
            return self.image_box.layer()
        if isinstance(image, str):
            return self.viewer.layers[image] if image in self.viewer.layers else None
        return image if image in self.viewer.layers else None

    def _browse(self) -> None:
        path = QFileDialog.getSaveFileName(self, "Project folder", self.project_path.text())[0]
        if path:
            self.project_path.setText(path if path.endswith(".zarr") else f"{path}.zarr")

    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _open_project(self) -> Project:
        path = Path(self.project_path.text()).expanduser()
        if self.project is None or self.project.path != path:
            self.project = Project(path)
        return self.project

    # -- annotation layers -----------------------------------------------------------------
    def annotation_layer(self, image=None):
        """The annotation layer paired with ``image`` (a layer or its name; default: the
        chosen image)."""
        image_layer = self._image(image)
        if image_layer is None:
            return None
        for layer in self.viewer.layers:
            info = annotation_info(layer)
            if info and info.get("image") == image_layer.name:
                return layer
        return None

    def annotate(self, image=None):
        """Create (or restore from the project) the annotation layer of an image (a layer or
        its name; default: the chosen one)."""
        image_layer = self._image(image)
        if image_layer is None:
            self._say("choose an image layer first")
            return None
        existing = self.annotation_layer(image_layer)
        if existing is not None:
            self.viewer.layers.selection.active = existing
            return existing
        image_name = image_layer.name
        try:
            project = self._open_project()
            shape = _spatial_shape(image_layer)
            key = project.add_image(np.asarray(image_layer.data), name=image_name, shape=shape)
            data = project.load_annotations(key)
        except (InputError, OSError, ValueError) as err:
            self._say(f"cannot use the project: {err}")
            return None
        restored = data is not None
        if data is None:
            data = np.zeros(shape, np.uint32)
        layer = self.viewer.add_labels(
            data,
            name=f"{image_name} annotations",
            scale=image_layer.scale[-data.ndim :],
            translate=image_layer.translate[-data.ndim :],
            metadata={
                ANNOTATION_KEY: {"image": image_name, "project": str(project.path), "key": key}
            },
        )
        self._adopt(layer)  # usually done already by the layer-inserted event
        self._show_counts(layer)
        if restored:
            self._say(f"restored the annotation of {image_name!r} from {project.path}")
        else:
            self._say(f"annotating {image_name!r}; autosaved to {project.path}")
        self.new_object()
        return layer

    def _inserted(self, event) -> None:
        layer = event.value
        if annotation_info(layer) is not None:
            self._adopt(layer)
        elif isinstance(layer, napari.layers.Image):
            # After the current insertion: a reader may add the image's annotation next.
            QTimer.singleShot(0, lambda: self._restore(layer))

    def _adopt(self, layer) -> None:
        """Autosave an annotation layer (also one made elsewhere: a project opened with
        File > Open), and keep its pairing when its image is renamed."""
        if layer in self._autosaves:
            return
        info = annotation_info(layer)
        try:
            project = Project(info["project"], create=False)
        except (InputError, OSError, ValueError, KeyError) as err:
            self._say(f"{layer.name!r} will not be autosaved: {err}")
            return
        self._autosaves[layer] = _Autosave(
            layer, project, info["key"], on_saved=lambda: self._saved(layer)
        )
        layer.events.paint.connect(lambda _e: self._show_counts(layer))
        image = self._image(info.get("image"))
        if image is not None:
            image.events.name.connect(lambda _e: info.update(image=image.name))

    def _restore(self, layer) -> None:
        if layer not in self.viewer.layers or self.annotation_layer(layer) is not None:
            return
        if np.prod(_spatial_shape(layer)) > RESTORE_MAX_PIXELS:
            return
        try:
            project = self._open_project()
        except (InputError, OSError, ValueError):
            return
        key = image_key(np.asarray(layer.data))
        if project.has(key) and project.load_annotations(key) is not None:
            self.image_box.set_layer(layer)
            self.annotate(layer)

    def _removed(self, event) -> None:
        autosave = self._autosaves.pop(event.value, None)
        if autosave is not None:
            autosave.close()

    def flush(self) -> None:
        """Save every annotation now (also called when the widget closes)."""
        for autosave in self._autosaves.values():
            autosave.flush()

    def closeEvent(self, event) -> None:
        self.flush()
        super().closeEvent(event)

    def _saved(self, layer) -> None:
        self._show_counts(layer)
        autosave = self._autosaves.get(layer)
        where = autosave.project.path if autosave is not None else ""
        self.saved.setText(f"autosaved {time.strftime('%H:%M:%S')} to {where}")

    def _show_counts(self, layer) -> None:
        c = annotation_counts(layer.data)
        self.counts.setText(
            f"{c['objects']} objects, {c['object_pixels']} object px, "
            f"{c['background_pixels']} background px"
        )

    def _active_annotation(self):
        layer = self.annotation_layer()
        if layer is None:
            layer = self.annotate()
        return layer

    def new_object(self) -> None:
        layer = self._active_annotation()
        if layer is None:
            return
        layer.selected_label = next_object_id(layer.data)
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer

    def paint_background(self) -> None:
        layer = self._active_annotation()
        if layer is None:
            return
        layer.selected_label = BACKGROUND_LABEL
        layer.mode = "paint"
        self.viewer.layers.selection.active = layer

    # -- start from prediction -------------------------------------------------------------
    def _requested_ids(self, prediction) -> list[int]:
        text = self.ids.text().replace(";", ",").strip()
        if not text:
            return [int(prediction.selected_label)]
        try:
            return [int(t) for t in text.replace(" ", ",").split(",") if t]
        except ValueError:
            raise InputError(f"object ids must be whole numbers, got {text!r}") from None

    def copy_from_prediction(self, ids: list[int] | None = None) -> list[int]:
        """Copy predicted objects into the annotation as corrected starting points."""
        prediction = self.prediction_box.layer()
        if prediction is None:
            self._say("choose a predicted Labels layer to copy from")
            return []
        layer = self._active_annotation()
        if layer is None:
            return []
        try:
            wanted = self._requested_ids(prediction) if ids is None else ids
            data, added = copy_objects(layer.data, prediction.data, wanted)
        except InputError as err:
            self._say(str(err))
            return []
        if not added:
            self._say("nothing copied: those objects are absent or already annotated")
            return []
        layer.data = data  # a data event: autosaved
        info = annotation_info(layer)
        try:
            self.project.save_predictions(
                info["key"], np.asarray(prediction.data), metadata=dict(prediction.metadata)
            )
        except (InputError, ValueError) as err:
            self._say(f"copied, but the prediction was not stored: {err}")
        self._show_counts(layer)
        self._say(f"copied {len(added)} object(s) as ids {added}; correct them by painting")
        return added

    def _toggle_click_copy(self, on: bool) -> None:
        callbacks = self.viewer.mouse_drag_callbacks
        if on and self._click_copy not in callbacks:
            callbacks.append(self._click_copy)
        elif not on and self._click_copy in callbacks:
            callbacks.remove(self._click_copy)

    def _click_copy(self, viewer, event) -> None:
        prediction = self.prediction_box.layer()
        if prediction is None:
            return
        value = prediction.get_value(event.position, world=True)
        if value:
            self.copy_from_prediction([int(value)])
