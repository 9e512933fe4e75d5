"""File > Save Layers offers the ImageJ ROI set and QuPath GeoJSON for a labels layer: the
save dialog's file types come from npe2's compatible writers, and napari picks our writer by
the file's suffix when no plugin is named."""

from __future__ import annotations

import json

import numpy as np
import pytest
import roifile

pytestmark = pytest.mark.gui

PLUGIN = "napari-instseg"


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    labels = np.zeros((40, 50), np.uint32)
    labels[5:15, 5:20] = 3
    labels[20:35, 25:45] = 7
    labels[24:28, 30:34] = 0  # a hole
    viewer.add_image(np.linspace(0, 1, 40 * 50, dtype=np.float32).reshape(40, 50), name="img")
    viewer.add_labels(labels, name="cells", metadata={"model": "m", "backend": "watershed"})
    return viewer


def offered(layers) -> dict[str, list[str]]:
    """What napari's Save dialog lists for ``layers``: our writers' titles -> extensions."""
    from napari.plugins._npe2 import file_extensions_string_for_layers

    _, writers = file_extensions_string_for_layers(layers)
    return {w.display_name: list(w.filename_extensions) for w in writers if PLUGIN in w.command}


@pytest.mark.parametrize("names", [["cells"], ["img", "cells"]])
def test_save_dialog_offers_roi_set_and_geojson_for_labels(viewer, names):
    choices = offered([viewer.layers[n] for n in names])
    if names == ["cells"]:
        assert choices["ImageJ ROI set (Fiji ROI Manager)"] == [".zip"]
    assert choices["outlines with measurements (QuPath GeoJSON)"] == [".geojson"]


def test_no_roi_set_or_geojson_for_an_image_alone(viewer):
    choices = offered([viewer.layers["img"]])
    assert not any(ext in (".zip", ".geojson") for exts in choices.values() for ext in exts)


def test_saving_by_suffix_alone_uses_our_writers(viewer, tmp_path):
    """No plugin named, as when a file name with that suffix is typed in the dialog."""
    viewer.layers.selection = {viewer.layers["cells"]}
    rois_path = tmp_path / "cells_RoiSet.zip"
    assert viewer.layers.save(str(rois_path), selected=True) == [str(rois_path)]
    rois = roifile.roiread(rois_path)
    assert [r.name for r in rois] == ["3", "7"]
    assert rois[0].roitype == roifile.ROI_TYPE.TRACED
    assert rois[1].roitype == roifile.ROI_TYPE.RECT and rois[1].shape_roi_size > 0  # hole

    geojson_path = tmp_path / "cells.geojson"
    assert viewer.layers.save(str(geojson_path), selected=True) == [str(geojson_path)]
    features = json.loads(geojson_path.read_text())["features"]
    assert [f["properties"]["id"] for f in features] == [3, 7]
    assert [len(f["geometry"]["coordinates"]) for f in features] == [1, 2]  # outer + hole
    assert features[1]["properties"]["measurements"]["area"] == 15 * 20 - 16
    assert features[0]["properties"]["backend"] == "watershed"
