"""Layer helpers shared by the widgets: pickers that hold layers (not their names), the plane
on screen, and the pairing record of annotation layers.

A picker keeps the layer the user chose through insertions, removals, reordering and
renames (its entry shows the new name), so no widget looks a layer up by a name that may
have changed since it was chosen. The widgets share these helpers instead of importing
each other.

Layers are compared with ``==``, never ``is``: napari hands plugin widgets a proxy of the
viewer, whose layers come back as new proxy objects on each access (equal to, and hashing
as, the layer they wrap).
"""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QComboBox, QListWidget, QListWidgetItem

#: Layer metadata key that pairs an annotation layer with its image and project entry.
ANNOTATION_KEY = "napari_instseg_annotation"


def annotation_info(layer) -> dict | None:
    """The pairing record of an annotation layer made by the Annotate widget, or None."""
    info = layer.metadata.get(ANNOTATION_KEY) if hasattr(layer, "metadata") else None
    return info if isinstance(info, dict) else None


def current_indices(viewer, layer) -> dict[int, int]:
    """The viewer's current position on each axis of ``layer`` (the plane on screen)."""
    step = viewer.dims.current_step
    offset = viewer.dims.ndim - layer.ndim
    return {ax: int(step[ax + offset]) for ax in range(layer.ndim) if 0 <= ax + offset < len(step)}


def _follow_layers(viewer, refresh: Callable, rename: Callable) -> None:
    events = viewer.layers.events
    for name in ("inserted", "removed", "moved", "reordered"):
        getattr(events, name).connect(refresh)
    events.renamed.connect(rename)


class LayerPicker(QComboBox):
    """A combo box of the viewer's layers that ``accept`` (a predicate on a layer), in the
    layer list's order, that keeps the chosen layer itself.

    ``none`` adds a first entry with that text that stands for no layer. ``layer_changed``
    fires with the chosen layer (or None) when the choice changes, not when the chosen
    layer is only renamed. The text API of :class:`QComboBox` still works
    (``currentText``, ``setCurrentText``), with the layers' current names.
    """

    layer_changed = Signal(object)

    def __init__(self, viewer, accept: Callable, *, none: str | None = None, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept
        self.none = none
        self._layers: list = []  # the layer of each entry (None for the ``none`` entry)
        self._chosen = None
        self.currentIndexChanged.connect(self._index_changed)
        _follow_layers(viewer, self.refresh, self._renamed)
        self.refresh()

    def layers(self) -> list:
        """The layers on offer, in order."""
        return [layer for layer in self._layers if layer is not None]

    def layer(self):
        """The chosen layer, or None."""
        i = self.currentIndex()
        return self._layers[i] if 0 <= i < len(self._layers) else None

    def set_layer(self, layer) -> None:
        """Choose ``layer`` (a layer, or the name of one on offer)."""
        if isinstance(layer, str):
            self.setCurrentText(layer)
            return
        if layer in self._layers:
            self.setCurrentIndex(self._layers.index(layer))

    def refresh(self, *_) -> None:
        """Offer the layers that ``accept`` now; the chosen layer stays chosen while it is
        offered (else the first entry is)."""
        chosen = self.layer()
        offered = [layer for layer in self.viewer.layers if self.accept(layer)]
        entries = ([None] if self.none is not None else []) + offered
        self.blockSignals(True)
        try:
            self.clear()
            self._layers = entries
            self.addItems([self.none if layer is None else layer.name for layer in entries])
            if chosen in entries:
                self.setCurrentIndex(entries.index(chosen))
        finally:
            self.blockSignals(False)
        self._index_changed()

    def _renamed(self, *_) -> None:
        for i, layer in enumerate(self._layers):
            if layer is not None and self.itemText(i) != layer.name:
                self.setItemText(i, layer.name)

    def _index_changed(self, *_) -> None:
        layer = self.layer()
        if layer != self._chosen:
            self._chosen = layer
            self.layer_changed.emit(layer)


class LayerChecklist(QListWidget):
    """A list of the viewer's layers that ``accept``, each with a check box; a layer that
    comes in is checked, and one the user unchecked stays unchecked (also when renamed).
    ``checked_layers()`` gives the checked layers themselves."""

    def __init__(self, viewer, accept: Callable, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.accept = accept
        self._layers: list = []
        self._unchecked: list = []  # layers the user unchecked (the layers, not names)
        self.itemChanged.connect(self._item_changed)
        _follow_layers(viewer, self.refresh, self._renamed)
        self.refresh()

    def refresh(self, *_) -> None:
        self._layers = [layer for layer in self.viewer.layers if self.accept(layer)]
        self._unchecked = [layer for layer in self._unchecked if layer in self.viewer.layers]
        self.blockSignals(True)
        try:
            self.clear()
            for layer in self._layers:
                item = QListWidgetItem(layer.name)
                item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                unchecked = layer in self._unchecked
                item.setCheckState(Qt.CheckState.Unchecked if unchecked else Qt.CheckState.Checked)
                self.addItem(item)
        finally:
            self.blockSignals(False)

    def _renamed(self, *_) -> None:
        for i, layer in enumerate(self._layers):
            if self.item(i).text() != layer.name:
                self.blockSignals(True)
                self.item(i).setText(layer.name)
                self.blockSignals(False)

    def _item_changed(self, item) -> None:
        layer = self._layers[self.row(item)]
        self._unchecked = [other for other in self._unchecked if other != layer]
        if item.checkState() != Qt.CheckState.Checked:
            self._unchecked.append(layer)

    def checked_layers(self) -> list:
        """The checked layers, in the layer list's order."""
        return [
            layer
            for i, layer in enumerate(self._layers)
            if self.item(i).checkState() == Qt.CheckState.Checked
        ]
