"""Layer pickers hold the chosen layer, not its name: they follow renames, insertions,
removals and reordering, in the helper and in every widget that picks layers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.plugin._layers import LayerPicker

pytestmark = pytest.mark.gui


def is_image(layer) -> bool:
    import napari

    return isinstance(layer, napari.layers.Image)


def test_picker_keeps_its_layer_through_renames_and_changes(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a = viewer.add_image(np.zeros((8, 8)), name="a")
    b = viewer.add_image(np.ones((8, 8)), name="b")
    viewer.add_labels(np.zeros((8, 8), np.uint32), name="not an image")
    picker = LayerPicker(viewer, is_image)
    qtbot.addWidget(picker)
    seen = []
    picker.layer_changed.connect(seen.append)
    picker.setCurrentText("b")
    assert picker.layer() is b and seen == [b]
    b.name = "b, renamed"
    assert picker.layer() is b and picker.currentText() == "b, renamed"
    assert [picker.itemText(i) for i in range(picker.count())] == ["a", "b, renamed"]
    assert seen == [b]  # a rename is no new choice
    a.name = "b"  # the old name now belongs to another layer: the choice stays
    assert picker.layer() is b
    viewer.layers.move(1, 0)
    viewer.add_image(np.ones((4, 4)), name="c")
    assert picker.layer() is b and picker.layers() == [b, a, viewer.layers["c"]]
    viewer.layers.remove(b)
    assert picker.layer() is a and seen == [b, a]

    empty = LayerPicker(viewer, is_image, none="(none)")
    qtbot.addWidget(empty)
    assert empty.layer() is None and empty.currentText() == "(none)"
    empty.set_layer(a)
    assert empty.layer() is a


def test_every_widget_picker_follows_a_renamed_layer(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_PROJECT", str(tmp_path / "project.zarr"))
    viewer = make_napari_viewer()
    image = viewer.add_image(np.random.default_rng(0).random((32, 32)), name="cells")
    labels = viewer.add_labels(np.zeros((32, 32), np.uint32), name="cells [model]")
    widgets = {
        name: viewer.window.add_plugin_dock_widget("napari-instseg", name)[1]
        for name in ("Segment", "Annotate", "Export")
    }
    segment, annotate, export = widgets["Segment"], widgets["Annotate"], widgets["Export"]
    annotation = annotate.annotate()
    image.name = "cells, renamed"
    labels.name = "prediction, renamed"
    # (the widgets see the layers through napari's proxy: equal, not identical)
    assert segment.image_layer() == image and segment.image_box.currentText() == image.name
    assert annotate.image_box.layer() == image
    assert annotate.prediction_box.layer() == labels
    assert annotate.annotation_layer() == annotation  # the pairing followed the rename
    assert annotate.annotate() == annotation  # no second annotation layer
    assert len(viewer.layers) == 3
    assert export.image_layer() == image
    assert export.labels_box.currentText() == "prediction, renamed"
    assert export.labels_layer() == labels
    assert "prediction__renamed" in export.path_edit.text()  # the suggested file follows
