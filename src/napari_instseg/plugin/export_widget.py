"""Export widget: save a labels layer as TIFF, zarr, OME-Zarr (with its image), an object
table, an ImageJ ROI set or QuPath GeoJSON, or save the model that made it with the knobs it
was tuned to.

Layers are read (and copied) on the main thread; the writing itself runs in a worker through
:mod:`napari_instseg.core.io`, so large exports keep the viewer responsive.
"""

from __future__ import annotations

from pathlib import Path

import napari
import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
)

from napari_instseg.core.arrays import InputError
from napari_instseg.core.io import FORMATS, export_labels
from napari_instseg.core.io.model_copy import export_model
from napari_instseg.core.zoo import list_models, user_model_dir

from ._jobs import call_in_worker
from ._layers import LayerPicker
from ._layout import ScrollingDock
from .writer import full_resolution, image_channel_axis, labels_attrs

#: (label in the picker, format key, file suffix)
EXPORT_FORMATS = (
    ("TIFF labels (.tif)", "tiff", ".tif"),
    ("zarr labels (.zarr)", "zarr", ".zarr"),
    ("OME-Zarr, image + labels", "ome-zarr", ".ome.zarr"),
    ("CSV object table (.csv)", "csv", ".csv"),
    ("ImageJ ROIs for Fiji (.zip)", "imagej-roi", ".zip"),
    ("QuPath GeoJSON", "geojson", ".geojson"),
    ("model, tuned knobs (.json)", "model", ".json"),
    ("bioimage.io model (.zip)", "bioimageio", ".zip"),
)
#: The picker's labels stay short enough for a narrow dock; the details are in tooltips.
FORMAT_TIPS = {
    "tiff": "the labels as a uint32 TIFF",
    "zarr": "the labels as a zarr (v3) array",
    "ome-zarr": "an .ome.zarr folder (OME-Zarr 0.5) with the image and the labels as pyramids",
    "csv": "one row per object: area, centroid, box and (with an image) mean intensity",
    "imagej-roi": "a .zip of ImageJ ROIs that Fiji's ROI Manager opens",
    "geojson": "QuPath GeoJSON (.geojson): object outlines with measurements",
    "model": "a copy of the model whose card holds the tuned post-processing knobs",
    "bioimageio": "the model with its tuned knobs as a BioImage Model Zoo package (.zip) for "
    "deepImageJ, ilastik, QuPath or `napari-instseg models --import`",
}
NO_IMAGE = "(none)"
_SUFFIXES = (*FORMATS, ".json", ".safetensors")


def _without_suffix(name: str) -> str:
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _safe_name(name: str) -> str:
    return (
        "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("._") or "labels"
    )


class ExportWidget(ScrollingDock):
    """Dock widget: labels (and image) layer, format, output path, Export."""

    def __init__(self, viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.job = None
        self.last_path: Path | None = None
        self._auto_path = True
        self._note = ""  # said after "saved ...", e.g. that the output is empty

        self.labels_box = LayerPicker(viewer, lambda layer: isinstance(layer, napari.layers.Labels))
        self.labels_box.setObjectName("labels")
        self.image_box = LayerPicker(
            viewer, lambda layer: isinstance(layer, napari.layers.Image), none=NO_IMAGE
        )
        self.image_box.setObjectName("image")
        self.image_box.setToolTip(
            "needed for OME-Zarr; gives mean intensities in the table and the GeoJSON"
        )
        self.format_box = QComboBox()
        self.format_box.setObjectName("format")
        for label, key, _ in EXPORT_FORMATS:
            self.format_box.addItem(label, key)
            self.format_box.setItemData(
                self.format_box.count() - 1, FORMAT_TIPS[key], Qt.ItemDataRole.ToolTipRole
            )
        self.path_edit = QLineEdit()
        self.path_edit.setObjectName("path")
        self.path_edit.setPlaceholderText("where to save")
        self.browse_button = QPushButton("Browse...")
        self.overwrite = QCheckBox("replace an existing file or zarr folder")
        self.export_button = QPushButton("Export")
        self.export_button.setObjectName("export")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit)
        path_row.addWidget(self.browse_button)
        form = QFormLayout()
        form.addRow("labels", self.labels_box)
        form.addRow("image", self.image_box)
        form.addRow("format", self.format_box)
        form.addRow("save to", path_row)
        form.addRow(self.overwrite)
        layout = QVBoxLayout(self.body)
        layout.addLayout(form)
        layout.addWidget(self.export_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.labels_box.currentTextChanged.connect(self._suggest_path)
        self.format_box.currentIndexChanged.connect(self._suggest_path)
        self.path_edit.textEdited.connect(self._path_edited)
        self.browse_button.clicked.connect(self.browse)
        self.export_button.clicked.connect(self.export)
        viewer.layers.events.inserted.connect(self.refresh_layers)
        viewer.layers.events.removed.connect(self.refresh_layers)
        self.refresh_layers()

    # -- pickers ---------------------------------------------------------------------------
    def refresh_layers(self, *_) -> None:
        """Re-read the pickers (they also follow the viewer by themselves); with one image
        open, choose it."""
        self.labels_box.refresh()
        self.image_box.refresh()
        images = self.image_box.layers()
        if self.image_box.layer() is None and len(images) == 1:
            self.image_box.set_layer(images[0])
        self._suggest_path()

    def labels_layer(self):
        return self.labels_box.layer()

    def image_layer(self):
        return self.image_box.layer()

    def format(self) -> str:
        return self.format_box.currentData()

    def set_format(self, key: str) -> None:
        self.format_box.setCurrentIndex(self.format_box.findData(key))

    def set_path(self, path: str | Path) -> None:
        """Choose the output path (as typing it would)."""
        self.path_edit.setText(str(path))
        self._auto_path = False

    # -- output path -----------------------------------------------------------------------
    def _suffix(self) -> str:
        return next(s for _, key, s in EXPORT_FORMATS if key == self.format())

    def _path_edited(self, _text: str) -> None:
        self._auto_path = False

    def _suggest_path(self, *_) -> None:
        text = self.path_edit.text().strip()
        if text and not self._auto_path:
            current = Path(text)
            self.path_edit.setText(
                str(current.with_name(_without_suffix(current.name) + self._suffix()))
            )
            return
        layer = self.labels_layer()
        if layer is None:
            return
        if self.format() == "model":
            model = layer.metadata.get("model")
            folder, stem = user_model_dir(), f"{model}-tuned" if model else ""
        else:
            source = self.image_layer()
            origin = getattr(getattr(source, "source", None), "path", None)
            folder = self.last_path.parent if self.last_path else None
            folder = folder or (Path(origin).parent if origin else Path.home())
            stem = _safe_name(layer.name)
            if self.format() == "bioimageio" and layer.metadata.get("model"):
                stem = _safe_name(f"{layer.metadata['model']}-bioimageio")
        self.path_edit.setText(str(folder / f"{stem}{self._suffix()}") if stem else "")
        self._auto_path = True

    def browse(self) -> None:
        label = self.format_box.currentText()
        path = QFileDialog.getSaveFileName(self, f"Export {label}", self.path_edit.text())[0]
        if path:
            name = _without_suffix(Path(path).name) + self._suffix()
            self.set_path(Path(path).with_name(name))

    # -- exporting -------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.status.setText(text)

    def _task(self, kind: str, path: Path, overwrite: bool):
        """Copy what the export needs from the layers; return a function for the worker."""
        layer = self.labels_layer()
        if layer is None:
            raise InputError("choose a labels layer first")
        meta = dict(layer.metadata)
        if kind in ("model", "bioimageio"):
            model = meta.get("model")
            if not model:
                raise InputError(
                    f"{layer.name!r} does not say which model made it; segment with the "
                    "Segment widget first"
                )
            if model not in {card.name for card, _ in list_models()}:
                raise InputError(f"model {model!r} of {layer.name!r} is not installed here")
            backend, knobs = meta.get("backend"), dict(meta.get("knobs") or {})
            name = _without_suffix(path.name)  # the model's name, with its parent recorded
            if kind == "bioimageio":

                def package():
                    from napari_instseg.core.io.bioimageio import export_bioimageio

                    return export_bioimageio(
                        model, path, backend=backend, knobs=knobs, name=name, overwrite=overwrite
                    )

                return package
            return lambda: export_model(
                model, path.parent, backend=backend, knobs=knobs, name=name, overwrite=overwrite
            )
        labels = np.array(full_resolution(layer.data, {"multiscale": layer.multiscale}))
        attrs = labels_attrs({"metadata": meta, "name": layer.name})
        if kind in ("imagej-roi", "geojson") and not labels.any():
            self._note = " (the labels have no objects: it is empty)"
        if kind in ("tiff", "zarr", "imagej-roi"):
            return lambda: export_labels(path, labels, kind=kind, attrs=attrs, overwrite=overwrite)
        image_layer = self.image_layer()
        if image_layer is None and kind == "ome-zarr":
            raise InputError("OME-Zarr export needs the image the labels were made from")
        image = channel_axis = spacing = None
        image_name = ""
        if image_layer is not None:
            image = np.array(
                full_resolution(image_layer.data, {"multiscale": image_layer.multiscale})
            )
            info = {"rgb": image_layer.rgb, "name": image_layer.name}
            channel_axis = image_channel_axis(image, info, labels.ndim)
            scale = tuple(float(s) for s in image_layer.scale[-labels.ndim :])
            spacing = None if all(s == 1.0 for s in scale) else scale
            image_name = image_layer.name
        if kind == "ome-zarr":  # the labels under the layer's name
            labels, attrs = {layer.name: labels}, {layer.name: attrs}
        return lambda: export_labels(
            path,
            labels,
            image,
            kind=kind,
            attrs=attrs,
            metadata=meta,
            channel_axis=channel_axis,
            image_name=image_name,
            spacing=spacing,
            overwrite=overwrite,
        )

    def export(self) -> None:
        """Export the chosen layer(s) in the chosen format, in a worker."""
        text = self.path_edit.text().strip()
        if not text:
            self._say("choose where to save first")
            return
        path = Path(text).expanduser()
        kind = self.format()
        self._note = ""
        try:
            task = self._task(kind, path, self.overwrite.isChecked())
        except InputError as err:
            self._say(f"cannot export: {err}")
            return
        self.export_button.setEnabled(False)
        self._say(f"exporting to {path} ...")
        self.job = call_in_worker(task, on_done=self._finished, on_error=self._failed)

    def _finished(self, written) -> None:
        self.export_button.setEnabled(True)
        self.last_path = Path(written)
        self._say(f"saved {written}{self._note}")

    def _failed(self, err: BaseException) -> None:
        self.export_button.setEnabled(True)
        self._say(f"export failed: {err}")
