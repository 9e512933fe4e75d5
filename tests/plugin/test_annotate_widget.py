"""The Annotate widget: paired annotation layer, ids, counts, autosave, restore, copy."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.data.sparse import BACKGROUND_LABEL
from napari_instseg.core.project import Project
from napari_instseg.core.samples import load_sample

pytestmark = pytest.mark.gui


@pytest.fixture
def annotate(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_INSTSEG_PROJECT", str(tmp_path / "project.zarr"))
    viewer = make_napari_viewer()
    image, truth = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(image[:128, :128], name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Annotate")
    widget.image_box.setCurrentText("nuclei")
    return viewer, widget, truth[:128, :128], tmp_path / "project.zarr"


def stored(path, widget):
    layer = widget.annotation_layer("nuclei")
    key = layer.metadata["napari_instseg_annotation"]["key"]
    return Project(path).load_annotations(key)


def test_paint_objects_and_background_are_autosaved(annotate, qtbot):
    viewer, widget, _, path = annotate
    layer = widget.annotate()
    assert layer.data.shape == (128, 128) and layer.data.dtype == np.uint32
    assert layer.selected_label == 1 and layer.mode == "paint"
    layer.brush_size = 5
    layer.paint((20, 20), layer.selected_label)
    widget.new_object()
    assert layer.selected_label == 2
    layer.paint((60, 60), 2)
    widget.paint_background()
    assert layer.selected_label == BACKGROUND_LABEL
    layer.paint((100, 100), BACKGROUND_LABEL)
    qtbot.waitUntil(lambda: np.array_equal(stored(path, widget), layer.data), timeout=5000)
    assert widget.counts.text().startswith("2 objects")
    assert "background px" in widget.counts.text()
    assert widget.saved.text().startswith("autosaved ") and str(path) in widget.saved.text()


def test_changes_without_events_are_caught_and_flushed_on_close(annotate, qtbot):
    viewer, widget, _, path = annotate
    layer = widget.annotate()
    layer.data[5:9, 5:9] = 4  # in place: no napari event at all
    widget.flush()  # the periodic check (or closing the widget) notices the change
    assert (stored(path, widget)[5:9, 5:9] == 4).all()


def test_annotation_is_restored_when_the_image_is_opened_again(annotate, qtbot):
    viewer, widget, _, path = annotate
    layer = widget.annotate()
    layer.data = np.pad(np.full((8, 8), 3, np.uint32), ((10, 110), (10, 110)))
    widget.flush()
    pixels = np.array(viewer.layers["nuclei"].data)
    viewer.layers.clear()
    viewer.add_image(pixels, name="nuclei again")  # same pixels, another name
    qtbot.waitUntil(lambda: widget.annotation_layer("nuclei again") is not None, timeout=5000)
    restored = widget.annotation_layer("nuclei again")
    assert (restored.data[10:18, 10:18] == 3).all() and restored.data.sum() == 3 * 64
    assert "restored" in widget.status.text()


def test_start_from_prediction_copies_chosen_objects(annotate, qtbot):
    viewer, widget, truth, path = annotate
    viewer.add_labels(truth, name="prediction", metadata={"model": "m"})
    widget.refresh_layers()
    widget.prediction_box.setCurrentText("prediction")
    layer = widget.annotate()
    layer.data[0, 0] = BACKGROUND_LABEL
    ids = [int(i) for i in np.unique(truth)[1:4]]
    widget.ids.setText(", ".join(map(str, ids)))
    widget.saved.clear()
    added = widget.copy_from_prediction()
    assert added == [1, 2, 3]
    copied = widget.status.text()
    assert copied.startswith("copied 3 object(s)")
    qtbot.waitUntil(lambda: widget.saved.text().startswith("autosaved"), timeout=5000)
    assert widget.status.text() == copied  # the autosave does not replace the message
    for new, old in zip(added, ids, strict=True):
        expected = truth == old
        expected[0, 0] = False  # painted background is never overwritten
        assert np.array_equal(layer.data == new, expected)
    assert layer.data[0, 0] == BACKGROUND_LABEL
    widget.ids.setText("")
    viewer.layers["prediction"].selected_label = int(np.unique(truth)[5])
    assert widget.copy_from_prediction() == [4]
    key = layer.metadata["napari_instseg_annotation"]["key"]
    labels, meta = Project(path).load_predictions(key)
    assert np.array_equal(labels, truth) and meta["model"] == "m"
    widget.ids.setText("three")
    assert widget.copy_from_prediction() == [] and "whole numbers" in widget.status.text()


def test_project_opened_from_file_menu_is_adopted_and_autosaved(annotate, qtbot):
    viewer, widget, _, path = annotate
    layer = widget.annotate()
    layer.data = np.pad(np.full((4, 4), 2, np.uint32), ((0, 124), (0, 124)))
    widget.flush()
    viewer.layers.clear()
    viewer.open(str(path), plugin="napari-instseg")
    qtbot.wait(50)
    names = [lay.name for lay in viewer.layers]
    assert names == ["nuclei", "nuclei annotations"]  # no duplicate from the auto-restore
    opened = viewer.layers["nuclei annotations"]
    assert opened.data.sum() == 2 * 16
    opened.data = np.pad(np.full((4, 4), 5, np.uint32), ((0, 124), (0, 124)))
    widget.flush()
    assert (stored(path, widget)[:4, :4] == 5).all()


def test_rgb_image_gets_a_plain_2d_annotation(annotate, qtbot):
    viewer, widget, _, path = annotate
    rgb = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    viewer.add_image(rgb, name="colour", rgb=True)
    layer = widget.annotate("colour")
    assert layer.data.shape == (40, 50)
    layer.data = np.pad(np.ones((2, 2), np.uint32), ((0, 38), (0, 48)))
    widget.flush()
    [entry] = [e for e in Project(path).entries() if e.name == "colour"]
    assert entry.shape == (40, 50) and entry.has_annotations
