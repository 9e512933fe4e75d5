"""The GUI main job: napari opens with the nuclei sample and the Segment widget docked."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import main
from napari_instseg.core.samples import load_sample

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


def image_in_view(viewer, layer) -> bool:
    """Whether the whole of ``layer`` (2D) is inside the canvas (to half a pixel)."""
    height, width = viewer.canvas.size
    zoom = viewer.camera.zoom
    centre = np.asarray(viewer.camera.center[-2:])
    half = np.array([height, width]) / zoom / 2
    low, high = np.asarray(layer.extent.world)[:, -2:]
    return bool(np.all(low >= centre - half - 0.5) and np.all(high <= centre + half + 0.5))


def test_sample_opens_fitted_to_the_canvas_with_ground_truth_hidden(qtbot):
    from napari_instseg.plugin.launch import open_viewer

    viewer, _ = open_viewer(block=False)
    try:
        image, truth = viewer.layers
        assert image.visible and not truth.visible  # the image does not look segmented
        assert image_in_view(viewer, image)  # not cut at the sides by the docked widget
    finally:
        viewer.close()


def test_opened_file_gets_the_model_for_its_modality_or_the_one_asked_for(qtbot, tmp_path):
    from napari_instseg.plugin.launch import open_viewer

    nuclei, _ = load_sample("nuclei2d_dsb_stardist")
    phase, _ = load_sample("phase2d_usiigaci_set1_crop512")
    tifffile.imwrite(tmp_path / "nuclei.tif", nuclei)
    tifffile.imwrite(tmp_path / "cells.tif", phase)
    expected = {"nuclei.tif": "generalist-nuclei", "cells.tif": "embedseg-cells"}
    for name, model in expected.items():
        viewer, widget = open_viewer([str(tmp_path / name)], block=False)
        try:
            # the sample's model is not forced on a file (the default sample is ignored)
            assert widget.model_box.currentText() == model, name
            assert image_in_view(viewer, viewer.layers[0])
        finally:
            viewer.close()

    viewer, widget = open_viewer(
        [str(tmp_path / "cells.tif")], model="threeclass-nuclei", block=False
    )
    try:
        assert widget.model_box.currentText() == "threeclass-nuclei"
    finally:
        viewer.close()
    with pytest.raises(ValueError, match="no model named 'no-such-model'; installed: "):
        open_viewer([str(tmp_path / "cells.tif")], model="no-such-model", block=False)


def test_view_refuses_missing_file(capsys):
    assert main(["view", "no/such/image.tif"]) != 0
    assert "input not found" in capsys.readouterr().err
