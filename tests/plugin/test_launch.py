"""The GUI main job: napari opens with the nuclei sample and the Segment widget docked."""

from __future__ import annotations

import pytest

from napari_instseg.cli import main

pytestmark = pytest.mark.gui


def test_open_viewer_loads_sample_and_docks_widget(qtbot):
    from napari_instseg.plugin.launch import open_viewer

    viewer, widget = open_viewer(block=False)
    try:
        names = [layer.name for layer in viewer.layers]
        assert names == ["nuclei 2D (DSB2018)", "nuclei 2D (DSB2018) ground truth"]
        assert widget.image_box.currentText() == "nuclei 2D (DSB2018)"
        assert widget.model_box.currentText() == "embedseg-nuclei"
        assert "Segment (napari-instseg)" in viewer.window.dock_widgets
    finally:
        viewer.close()


def test_view_refuses_missing_file(capsys):
    assert main(["view", "no/such/image.tif"]) != 0
    assert "input not found" in capsys.readouterr().err
