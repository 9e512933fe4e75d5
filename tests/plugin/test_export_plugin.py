"""Export in napari: File > Save writers, the reader for projects / OME-Zarr / labels zarr,
and the Export widget, each checked by opening what was written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_instseg.core.checkpoint import read_card
from napari_instseg.core.io import read_labels
from napari_instseg.core.io.ome_zarr import read_ome_zarr, write_ome_zarr
from napari_instseg.core.project import Project
from napari_instseg.core.samples import load_sample
from napari_instseg.plugin.reader import get_reader
from napari_instseg.plugin.writer import ExportError

pytestmark = pytest.mark.gui

PLUGIN = "napari-instseg"
MODEL = "threeclass-nuclei"  # a shipped model: the labels' metadata names it
META = {
    "model": MODEL,
    "method": "threeclass",
    "backend": "watershed",
    "knobs": {"seed_threshold": 0.7, "min_size": 10},
    "source_image": "nuclei",
    "versions": {"napari_instseg": "0.1.0"},
}


@pytest.fixture(scope="module")
def sample():
    image, truth = load_sample("nuclei2d_dsb_stardist")
    return image, truth.astype(np.uint32)


@pytest.fixture
def viewer(make_napari_viewer, sample):
    viewer = make_napari_viewer()
    image, truth = sample
    viewer.add_image(image, name="nuclei")
    viewer.add_labels(truth, name="nuclei [threeclass-nuclei]", metadata=dict(META))
    return viewer


def save_selected(viewer, names, path):
    viewer.layers.selection = {viewer.layers[n] for n in names}
    return viewer.layers.save(str(path), selected=True, plugin=PLUGIN)


# -- writers (File > Save Layers) -------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".tif", ".tiff", ".zarr"])
def test_save_labels_layer_to_tiff_and_zarr(viewer, sample, tmp_path, suffix):
    path = tmp_path / f"out{suffix}"
    written = save_selected(viewer, ["nuclei [threeclass-nuclei]"], path)
    assert written == [str(path)]
    labels, attrs = read_labels(path)
    assert np.array_equal(labels, sample[1])
    assert attrs["model"] == MODEL and attrs["knobs"] == META["knobs"]
    assert attrs["layer_name"] == "nuclei [threeclass-nuclei]"
    if suffix != ".zarr":
        assert tifffile.imread(path).dtype == np.uint32


def test_save_image_and_labels_as_ome_zarr_and_open_back(viewer, sample, tmp_path):
    image, truth = sample
    viewer.add_labels((truth > 0).astype(np.uint8), name="mask")
    path = tmp_path / "nuclei.ome.zarr"
    written = save_selected(viewer, ["nuclei", "nuclei [threeclass-nuclei]", "mask"], path)
    assert written == [str(path)]
    back, labels, meta = read_ome_zarr(path)
    assert np.array_equal(back, image) and meta["name"] == "nuclei"
    assert set(labels) == {"nuclei [threeclass-nuclei]", "mask"}
    assert meta["labels_attrs"]["nuclei [threeclass-nuclei]"]["backend"] == "watershed"

    viewer.layers.clear()
    layers = viewer.open(str(path), plugin=PLUGIN)
    by_name = {layer.name: layer for layer in layers}
    assert set(by_name) == {"nuclei", "nuclei [threeclass-nuclei]", "mask"}
    opened = by_name["nuclei [threeclass-nuclei]"]
    assert opened.multiscale  # 512 x 512: two levels
    assert np.array_equal(np.asarray(opened.data[0]), truth)
    assert len(np.unique(np.asarray(opened.data[0]))) == 126  # 125 objects + background
    assert opened.metadata["model"] == MODEL
    assert np.array_equal(np.asarray(by_name["nuclei"].data[0]), image)


def test_save_table_uses_the_image_for_intensities(viewer, sample, tmp_path):
    image, truth = sample
    path = tmp_path / "objects.csv"
    save_selected(viewer, ["nuclei", "nuclei [threeclass-nuclei]"], path)
    df = pd.read_csv(path)
    areas = np.bincount(truth.ravel())
    ids = np.flatnonzero(areas)[1:]
    assert df["id"].tolist() == ids.tolist() and df["area"].tolist() == areas[ids].tolist()
    sums = np.bincount(truth.ravel(), weights=image.ravel().astype(float))
    np.testing.assert_allclose(df["mean_intensity"], sums[ids] / areas[ids])
    assert (df["model"] == MODEL).all()
    assert json.loads(df["knobs"][0]) == META["knobs"]

    only_labels = tmp_path / "labels_only.csv"
    save_selected(viewer, ["nuclei [threeclass-nuclei]"], only_labels)
    assert "mean_intensity" not in pd.read_csv(only_labels).columns


def test_ome_zarr_writer_needs_the_image(viewer, tmp_path):
    with pytest.raises(ExportError, match="needs the image layer"):
        save_selected(viewer, ["nuclei [threeclass-nuclei]"], tmp_path / "x.ome.zarr")
    assert not (tmp_path / "x.ome.zarr").exists()


def test_save_labels_as_roi_set_and_geojson(viewer, sample, tmp_path):
    import roifile

    image, truth = sample
    ids = np.unique(truth)[1:].tolist()
    rois_path = tmp_path / "RoiSet.zip"
    assert save_selected(viewer, ["nuclei [threeclass-nuclei]"], rois_path) == [str(rois_path)]
    assert [int(r.name) for r in roifile.roiread(rois_path)] == ids

    geojson_path = tmp_path / "nuclei.geojson"
    save_selected(viewer, ["nuclei", "nuclei [threeclass-nuclei]"], geojson_path)
    features = json.loads(geojson_path.read_text())["features"]
    assert [f["properties"]["id"] for f in features] == ids
    sums = np.bincount(truth.ravel(), weights=image.ravel().astype(float))
    areas = np.bincount(truth.ravel())
    means = [f["properties"]["measurements"]["mean_intensity"] for f in features]
    np.testing.assert_allclose(means, sums[ids] / areas[ids])
    assert all(f["properties"]["backend"] == "watershed" for f in features)


# -- reader -----------------------------------------------------------------------------------
def test_reader_opens_a_project_folder(make_napari_viewer, sample, tmp_path):
    image, truth = sample
    annotation = np.zeros_like(truth)
    annotation[truth == 5] = 1
    annotation[:10, :10] = 65535  # painted background
    project = Project(tmp_path / "proj.zarr")
    key = project.add_image(image, name="nuclei")
    project.save_annotations(key, annotation)
    project.save_predictions(key, truth, metadata=META)
    bare = project.add_image(image[:64, :64], name="crop", store_image=False)
    project.save_annotations(bare, annotation[:64, :64])

    viewer = make_napari_viewer()
    layers = viewer.open(str(tmp_path / "proj.zarr"), plugin=PLUGIN)
    by_name = {layer.name: layer for layer in layers}
    assert set(by_name) == {
        "nuclei",
        "nuclei annotations",
        f"nuclei [{MODEL}]",
        "crop annotations",
    }
    assert np.array_equal(by_name["nuclei"].data, image)
    ann = by_name["nuclei annotations"]
    assert np.array_equal(ann.data, annotation)
    info = ann.metadata["napari_instseg_annotation"]
    assert info == {"image": "nuclei", "project": str(tmp_path / "proj.zarr"), "key": key}
    pred = by_name[f"nuclei [{MODEL}]"]
    assert np.array_equal(pred.data, truth) and pred.metadata["knobs"] == META["knobs"]
    assert pred.metadata["source_image"] == "nuclei"


def test_reader_opens_a_multichannel_pyramid(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 200, (2, 600, 520)).astype(np.uint8)
    labels = np.zeros((600, 520), np.uint32)
    labels[100:300, 50:90] = 3
    labels[400:420, 300:500] = 9
    path = write_ome_zarr(
        tmp_path / "two.ome.zarr",
        image,
        labels,
        image_name="two",
        channel_axis=0,
        spacing=(0.5, 0.5),
    )
    viewer = make_napari_viewer()
    layers = viewer.open(str(path), plugin=PLUGIN)
    images = [layer for layer in layers if layer._type_string == "image"]
    (opened,) = [layer for layer in layers if layer._type_string == "labels"]
    assert len(images) == 2 and all(layer.multiscale for layer in images)
    assert np.array_equal(np.asarray(images[1].data[0]), image[1])
    assert opened.multiscale and [tuple(d.shape) for d in opened.data] == [(600, 520), (300, 260)]
    assert np.array_equal(np.asarray(opened.data[0]), labels)
    assert np.array_equal(np.asarray(opened.data[1]), labels[::2, ::2])
    assert tuple(opened.scale) == (0.5, 0.5) and tuple(images[0].scale) == (0.5, 0.5)


def test_reader_opens_a_labels_zarr_and_refuses_other_folders(viewer, sample, tmp_path):
    path = tmp_path / "labels.zarr"
    save_selected(viewer, ["nuclei [threeclass-nuclei]"], path)
    viewer.layers.clear()
    (layer,) = viewer.open(str(path), plugin=PLUGIN)
    assert layer.name == "nuclei [threeclass-nuclei]" and np.array_equal(layer.data, sample[1])
    assert layer.metadata["backend"] == "watershed"

    import zarr

    zarr.create_array(store=str(tmp_path / "float.zarr"), shape=(4, 4), dtype="float32")
    (tmp_path / "plain.zarr").mkdir()
    (tmp_path / "x.tif").write_bytes(b"")
    for other in ("float.zarr", "plain.zarr", "x.tif", "missing.zarr"):
        assert get_reader(str(tmp_path / other)) is None, other


# -- Export widget ----------------------------------------------------------------------------
@pytest.fixture
def widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Export")
    widget.labels_box.setCurrentText("nuclei [threeclass-nuclei]")
    widget.image_box.setCurrentText("nuclei")
    return widget


def export_and_wait(widget, qtbot, kind, path):
    widget.set_format(kind)
    widget.set_path(path)
    widget.export_button.click()
    assert widget.job is not None, widget.status.text()
    qtbot.waitUntil(lambda: not widget.job.running, timeout=30_000)
    return widget.status.text()


@pytest.mark.parametrize(
    ("kind", "name"),
    [("tiff", "a.tif"), ("zarr", "a.zarr"), ("ome-zarr", "a.ome.zarr"), ("csv", "a.csv")],
)
def test_widget_exports_each_labels_format(widget, qtbot, sample, tmp_path, kind, name):
    image, truth = sample
    path = tmp_path / name
    status = export_and_wait(widget, qtbot, kind, path)
    assert status == f"saved {path}"
    if kind == "csv":
        df = pd.read_csv(path)
        assert len(df) == 125 and (df["backend"] == "watershed").all()
        assert "mean_intensity" in df.columns
    elif kind == "ome-zarr":
        back, labels, _ = read_ome_zarr(path)
        assert np.array_equal(back, image)
        assert np.array_equal(labels["nuclei [threeclass-nuclei]"], truth)
    else:
        labels, attrs = read_labels(path)
        assert np.array_equal(labels, truth) and attrs["model"] == MODEL


def test_widget_exports_roi_sets_and_geojson(widget, viewer, qtbot, sample, tmp_path):
    import roifile

    _, truth = sample
    path = tmp_path / "RoiSet.zip"
    assert export_and_wait(widget, qtbot, "imagej-roi", path) == f"saved {path}"
    assert len(roifile.roiread(path)) == 125
    path = tmp_path / "cells.geojson"
    assert export_and_wait(widget, qtbot, "geojson", path) == f"saved {path}"
    features = json.loads(path.read_text())["features"]
    assert len(features) == 125 and "mean_intensity" in features[0]["properties"]["measurements"]

    viewer.add_labels(np.zeros((3, 8, 8), np.uint32), name="nothing")
    widget.labels_box.setCurrentText("nothing")
    widget.image_box.setCurrentText("(none)")
    path = tmp_path / "nothing.zip"
    status = export_and_wait(widget, qtbot, "imagej-roi", path)
    assert status.startswith(f"saved {path}") and "no objects" in status
    assert roifile.roiread(path) == []


def test_widget_exports_the_model_with_its_tuned_knobs(widget, qtbot, tmp_path):
    path = tmp_path / "models" / "nuclei-mine.json"
    status = export_and_wait(widget, qtbot, "model", path)
    assert status == f"saved {path}", status
    card = read_card(path)
    assert card.name == "nuclei-mine" and card.parent == MODEL
    assert card.backend == "watershed"
    assert card.backend_config["seed_threshold"] == 0.7 and card.backend_config["min_size"] == 10
    assert (tmp_path / "models" / "nuclei-mine.safetensors").exists()


@pytest.mark.slow
def test_widget_exports_the_model_as_a_bioimageio_package(widget, qtbot, tmp_path):
    import zipfile

    from napari_instseg.core.io.bioimageio import load_bioimageio

    path = tmp_path / "nuclei-package.zip"
    status = export_and_wait(widget, qtbot, "bioimageio", path)
    assert status == f"saved {path}", status
    assert "rdf.yaml" in zipfile.ZipFile(path).namelist()
    model = load_bioimageio(path)  # our post-processing travels with it
    assert model.card.name == "nuclei-package" and model.card.parent == MODEL
    assert model.card.backend == "watershed"
    assert model.card.backend_config["seed_threshold"] == 0.7


def test_widget_explains_what_is_missing(widget, viewer, qtbot, tmp_path):
    widget.image_box.setCurrentText("(none)")
    widget.set_format("ome-zarr")
    widget.set_path(tmp_path / "x.ome.zarr")
    widget.export()
    assert "needs the image" in widget.status.text()

    viewer.add_labels(np.zeros((8, 8), np.uint32), name="hand-made")
    widget.labels_box.setCurrentText("hand-made")
    widget.set_format("model")
    widget.set_path(tmp_path / "m.json")
    widget.export()
    assert "does not say which model" in widget.status.text()
    assert list(tmp_path.iterdir()) == []

    # refusing to replace an existing file without the checkbox, in the worker
    target = tmp_path / "t.tif"
    target.write_bytes(b"old")
    widget.labels_box.setCurrentText("nuclei [threeclass-nuclei]")
    assert "already exists" in export_and_wait(widget, qtbot, "tiff", target)
    assert target.read_bytes() == b"old"
    widget.overwrite.setChecked(True)
    assert export_and_wait(widget, qtbot, "tiff", target) == f"saved {target}"


def test_widget_suggests_a_path_per_format(widget, tmp_path):
    widget.set_format("csv")
    assert widget.path_edit.text().endswith("nuclei__threeclass-nuclei.csv")
    widget.set_path(tmp_path / "mine.tif")
    widget.set_format("ome-zarr")
    assert widget.path_edit.text() == str(tmp_path / "mine.ome.zarr")
    widget.set_format("zarr")
    assert widget.path_edit.text() == str(tmp_path / "mine.zarr")
    widget.set_format("imagej-roi")
    assert widget.path_edit.text() == str(tmp_path / "mine.zip")
    widget.set_format("geojson")
    assert widget.path_edit.text() == str(tmp_path / "mine.geojson")
