"""``napari-instseg export`` to an ImageJ ROI set (.zip) and QuPath GeoJSON, in-process: the
outputs read back, 3D positions, empty labels, and one-line refusals with exit code 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import roifile
import tifffile

from napari_instseg.core.io.tiff import write_labels_tiff
from napari_instseg.core.samples import load_sample
from test_cli_export import one_line_error, run


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    image, truth = load_sample("nuclei2d_dsb_stardist")
    folder = tmp_path_factory.mktemp("inputs")
    tifffile.imwrite(folder / "nuclei.tif", image)
    write_labels_tiff(
        folder / "nuclei_labels.tif",
        truth,
        attrs={"model": "some-model", "backend": "watershed", "knobs": {"min_size": 5}},
    )
    return {"image": folder / "nuclei.tif", "labels": folder / "nuclei_labels.tif", "truth": truth}


def test_export_writes_a_roi_set_and_geojson(files, tmp_path, capsys):
    rois_path, geojson_path = tmp_path / "RoiSet.zip", tmp_path / "nuclei.geojson"
    rc, out, err = run(
        capsys,
        "export",
        files["labels"],
        "--image",
        files["image"],
        "-o",
        rois_path,
        "-o",
        geojson_path,
    )
    assert rc == 0, err
    assert f"125 objects -> {rois_path} (imagej-roi)" in out
    assert f"125 objects -> {geojson_path} (geojson)" in out

    rois = roifile.roiread(rois_path)
    ids = np.unique(files["truth"])[1:].tolist()
    assert [int(r.name) for r in rois] == ids
    areas = np.bincount(files["truth"].ravel())
    # traced outlines along pixel edges: the polygon area is the object's pixel count
    for roi in rois[:10]:
        (ring,) = roi.coordinates(multi=True)
        x, y = ring[:, 0].astype(float), ring[:, 1].astype(float)
        shoelace = abs(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)) / 2
        assert shoelace == areas[int(roi.name)]

    data = json.loads(geojson_path.read_text())
    props = [f["properties"] for f in data["features"]]
    assert [p["id"] for p in props] == ids
    assert all(p["backend"] == "watershed" and p["model"] == "some-model" for p in props)
    assert all("mean_intensity" in p["measurements"] for p in props)
    assert [p["measurements"]["area"] for p in props] == areas[ids].tolist()


def test_export_3d_rois_carry_their_slice(tmp_path, capsys):
    labels = np.zeros((4, 16, 16), np.uint16)
    labels[1:3, 2:8, 2:8] = 3
    labels[3, 10:14, 10:14] = 8
    source = tmp_path / "stack.tif"
    tifffile.imwrite(source, labels)
    rc, out, err = run(capsys, "export", source, "-o", tmp_path / "stack.zip")
    assert rc == 0, err
    rois = roifile.roiread(tmp_path / "stack.zip")
    assert [(r.name, r.position) for r in rois] == [("3-z2", 2), ("3-z3", 3), ("8-z4", 4)]


def test_export_of_labels_without_objects_writes_empty_files_and_says_so(tmp_path, capsys):
    source = tmp_path / "empty.tif"
    tifffile.imwrite(source, np.zeros((8, 8), np.uint16))
    rc, out, err = run(
        capsys, "export", source, "-o", tmp_path / "e.zip", "-o", tmp_path / "e.geojson"
    )
    assert rc == 0, err
    assert "0 objects" in out
    assert err.count("no objects") == 2 and "empty ROI set" in err
    assert roifile.roiread(tmp_path / "e.zip") == []
    assert json.loads((tmp_path / "e.geojson").read_text())["features"] == []


@pytest.mark.parametrize("name", ["RoiSet.zip", "cells.geojson"])
def test_export_refuses_an_existing_output_unless_overwrite(files, tmp_path, capsys, name):
    target = tmp_path / name
    target.write_bytes(b"keep me")
    rc, _, err = run(capsys, "export", files["labels"], "-o", target)
    assert rc == 2
    assert "already exists" in one_line_error(err)
    assert target.read_bytes() == b"keep me"
    rc, _, err = run(capsys, "export", files["labels"], "-o", target, "--overwrite")
    assert rc == 0, err
    assert target.read_bytes() != b"keep me"


@pytest.mark.parametrize("name", ["RoiSet.zip", "cells.geojson"])
def test_export_to_a_path_that_cannot_be_written_is_one_line(files, tmp_path, capsys, name):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where a folder should be")
    rc, _, err = run(capsys, "export", files["labels"], "-o", blocker / name)
    assert rc == 2
    assert "not-a-folder" in one_line_error(err)
    assert blocker.read_text() == "a file where a folder should be"
