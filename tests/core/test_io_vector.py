"""Vector exports of labels: pixel-edge outlines, ImageJ ROI sets and QuPath GeoJSON.

Every format is read back (ROI sets with ``roifile``, GeoJSON with ``json``), its polygons
filled again (a pixel is inside when its centre is, as in Fiji and QuPath) and compared with
the labels object by object. Outlines follow pixel edges, so the comparison is exact; the
issue's bar of IoU >= 0.95 per object is asserted as well.
"""

from __future__ import annotations

import json
import logging
import zipfile

import numpy as np
import pytest
import roifile
from skimage.draw import polygon as fill_polygon

from napari_instseg.core.arrays import InputError
from napari_instseg.core.io import export_format
from napari_instseg.core.io.geojson import labels_to_features, write_geojson
from napari_instseg.core.io.roi import labels_to_rois, write_imagej_rois
from napari_instseg.core.io.table import object_table
from napari_instseg.core.outlines import label_outlines, ring_area, trace_mask
from napari_instseg.core.samples import load_sample

BIG_ID = 4_000_000_000


def fill_rings(rings, shape) -> np.ndarray:
    """Pixels inside an even-odd union of rings of ``(x, y)`` pixel-corner vertices."""
    inside = np.zeros(shape, bool)
    for ring in rings:
        ring = np.asarray(ring, dtype=float)
        # pixel (r, c) has its centre at (c + 0.5, r + 0.5): shift the vertices by half a pixel
        rr, cc = fill_polygon(ring[:, 1] - 0.5, ring[:, 0] - 0.5, shape)
        part = np.zeros(shape, bool)
        part[rr, cc] = True
        inside ^= part
    return inside


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return np.logical_and(a, b).sum() / np.logical_or(a, b).sum()


def geometry_rings(geometry: dict) -> list:
    if geometry["type"] == "Polygon":
        return list(geometry["coordinates"])
    assert geometry["type"] == "MultiPolygon"
    return [ring for polygon in geometry["coordinates"] for ring in polygon]


def assert_objects_match(filled: dict[int, np.ndarray], labels: np.ndarray) -> None:
    """Each id's filled outline is that object, and every object has one."""
    ids = [int(i) for i in np.unique(labels) if i]
    assert sorted(filled) == ids
    for label_id, mask in filled.items():
        truth = labels == label_id
        assert iou(mask, truth) >= 0.95, label_id
        assert np.array_equal(mask, truth), label_id  # pixel edges: exact


@pytest.fixture(scope="module")
def tricky() -> np.ndarray:
    """Objects with holes, several parts, diagonal contacts, the border and a huge id."""
    labels = np.zeros((26, 32), np.uint32)
    labels[3:8, 3:8] = 1  # plain square
    labels[10:21, 2:13] = 2  # a frame ...
    labels[13:18, 5:10] = 0  # ... with a hole ...
    labels[14:17, 6:9] = 3  # ... holding an island (another object)
    labels[2:5, 15:19] = 4  # two parts
    labels[8:10, 15:18] = 4
    for k in range(3):  # a staircase of pixels touching only at corners: three parts
        labels[12 + k, 20 + k] = 5
    # a ring of pixels whose gap closes diagonally: the hole reaches outside through a corner
    labels[2:7, 22:27] = 6
    labels[3:6, 23:26] = 0
    labels[2, 22] = 0
    labels[1, 21] = 6
    labels[21:26, 26:32] = BIG_ID  # touches the bottom and right borders
    labels[22, 27:29] = 0  # with two holes
    labels[24, 30] = 0
    return labels


# -- outlines ---------------------------------------------------------------------------------
def test_outlines_fill_back_to_every_object(tricky):
    outlines = label_outlines(tricky)
    filled = {
        i: fill_rings([r for polygon in polys for r in polygon], tricky.shape)
        for i, polys in outlines.items()
    }
    assert_objects_match(filled, tricky)
    parts = {i: len(polys) for i, polys in outlines.items()}
    holes = {i: sum(len(p) - 1 for p in polys) for i, polys in outlines.items()}
    assert parts == {1: 1, 2: 1, 3: 1, 4: 2, 5: 3, 6: 2, BIG_ID: 1}
    assert holes == {1: 0, 2: 1, 3: 0, 4: 0, 5: 0, 6: 0, BIG_ID: 2}
    for polys in outlines.values():
        for outer, *inner in polys:
            assert ring_area(outer) > 0 and all(ring_area(h) < 0 for h in inner)


def test_outlines_are_corners_only_and_each_part_fills_alone():
    mask = np.zeros((6, 7), bool)
    mask[1:5, 1:6] = True
    mask[2:4, 2:4] = False
    (polygon,) = trace_mask(mask)
    outer, hole = polygon
    assert outer.tolist() == [[1, 1], [6, 1], [6, 5], [1, 5]]
    assert sorted(hole.tolist()) == [[2, 2], [2, 4], [4, 2], [4, 4]]
    assert ring_area(outer) == 20 and ring_area(hole) == -4
    assert np.array_equal(fill_rings(polygon, mask.shape), mask)
    assert trace_mask(np.zeros((3, 3), bool)) == []


def test_outlines_of_random_labels_fill_back():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=(40, 40)).astype(np.uint32)  # ragged, many parts and holes
    outlines = label_outlines(labels)
    filled = {
        i: fill_rings([r for p in polys for r in p], labels.shape) for i, polys in outlines.items()
    }
    assert_objects_match(filled, labels)


# -- ImageJ ROI set ---------------------------------------------------------------------------
def read_rois(path) -> list:
    return roifile.roiread(path)


def test_roi_set_round_trip(tricky, tmp_path):
    path = write_imagej_rois(tmp_path / "RoiSet.zip", tricky)
    rois = read_rois(path)
    assert [r.name for r in rois] == ["1", "2", "3", "4", "5", "6", str(BIG_ID)]
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == [f"{r.name}.roi" for r in rois]
    filled = {int(r.name): fill_rings(r.coordinates(multi=True), tricky.shape) for r in rois}
    assert_objects_match(filled, tricky)
    types = {int(r.name): r.roitype for r in rois}
    # one piece without holes: a traced polygon; holes or pieces: one composite ROI
    assert types[1] == types[3] == roifile.ROI_TYPE.TRACED
    assert types[2] == roifile.ROI_TYPE.RECT  # a composite ROI is stored as a rectangle type
    assert all(r.composite for r in rois if int(r.name) in (2, 4, 5, 6, BIG_ID))
    assert all(r.position == 0 for r in rois)
    assert rois[0].props == "label: 1\n"
    # the bounds Fiji shows for a traced ROI: its pixel-corner box
    assert (rois[0].left, rois[0].top, rois[0].right, rois[0].bottom) == (3, 3, 8, 8)


def test_roi_set_of_a_real_image(tmp_path):
    _, truth = load_sample("nuclei2d_dsb_stardist")
    truth = truth.astype(np.uint32)
    rois = read_rois(write_imagej_rois(tmp_path / "nuclei.zip", truth))
    assert len(rois) == 125
    filled = {int(r.name): fill_rings(r.coordinates(multi=True), truth.shape) for r in rois}
    assert_objects_match(filled, truth)


def test_roi_set_in_3d_has_one_roi_per_plane_with_its_slice(tmp_path):
    labels = np.zeros((3, 12, 12), np.uint32)
    labels[0:2, 2:6, 2:6] = 1
    labels[1, 7:11, 6:11] = 2
    labels[1, 8:10, 8] = 0  # a hole on one plane only
    labels[2, 1:3, 1:3] = 2
    labels[2, 6:9, 6:9] = 2  # two pieces on the last plane
    rois = read_rois(write_imagej_rois(tmp_path / "stack.zip", labels))
    assert [(r.name, r.position) for r in rois] == [
        ("1-z1", 1),
        ("1-z2", 2),
        ("2-z2", 2),
        ("2-z3", 3),
    ]
    assert rois[2].props == "label: 2\nz: 2\n"
    for roi in rois:
        label_id, z = int(roi.name.split("-")[0]), roi.position - 1
        mask = fill_rings(roi.coordinates(multi=True), labels.shape[1:])
        assert np.array_equal(mask, labels[z] == label_id), roi.name
    assert [r.composite for r in rois] == [False, False, True, True]


def test_roi_set_keeps_coordinates_beyond_imagej_integer_range(tmp_path):
    labels = np.zeros((3, 70_010), np.uint32)
    labels[1, 70_000:70_005] = 2  # past the 60535 that ImageJ's 16-bit coordinates reach
    labels[0:2, 40_000:40_003] = 3
    rois = read_rois(write_imagej_rois(tmp_path / "wide.zip", labels))
    filled = {int(r.name): fill_rings(r.coordinates(multi=True), labels.shape) for r in rois}
    assert_objects_match(filled, labels)


def test_roi_set_of_labels_without_objects_is_empty(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="napari_instseg"):
        path = write_imagej_rois(tmp_path / "none.zip", np.zeros((8, 8), np.uint32))
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == []
    assert read_rois(path) == []
    assert "no objects" in caplog.text
    assert labels_to_rois(np.zeros((2, 4, 4), np.uint32)) == []


def test_roi_set_refuses_to_replace_a_file_unless_asked(tricky, tmp_path):
    path = tmp_path / "RoiSet.zip"
    path.write_bytes(b"old")
    with pytest.raises(InputError, match="already exists"):
        write_imagej_rois(path, tricky)
    assert path.read_bytes() == b"old"
    write_imagej_rois(path, tricky, overwrite=True)
    assert len(read_rois(path)) == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["RoiSet.zip"]  # nothing staged left


def test_a_failed_write_leaves_nothing(tricky, tmp_path, monkeypatch):
    def broken(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(roifile.ImagejRoi, "tobytes", broken)
    with pytest.raises(OSError, match="No space"):
        write_imagej_rois(tmp_path / "RoiSet.zip", tricky)
    assert list(tmp_path.iterdir()) == []


def test_vector_formats_are_chosen_by_suffix():
    assert export_format("cells_RoiSet.zip") == "imagej-roi"
    assert export_format("cells.geojson") == "geojson"
    with pytest.raises(InputError, match=".geojson"):
        export_format("cells.json")


# -- QuPath GeoJSON ---------------------------------------------------------------------------
def test_geojson_round_trip_with_measurements(tricky, tmp_path):
    image = np.random.default_rng(1).random(tricky.shape, dtype=np.float32)
    meta = {"model": "m", "method": "threeclass", "backend": "watershed", "knobs": {"a": 1}}
    path = write_geojson(tmp_path / "cells.geojson", tricky, image, metadata=meta)
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    features = data["features"]
    ids = [f["properties"]["id"] for f in features]
    assert ids == [1, 2, 3, 4, 5, 6, BIG_ID]
    filled = {
        f["properties"]["id"]: fill_rings(geometry_rings(f["geometry"]), tricky.shape)
        for f in features
    }
    assert_objects_match(filled, tricky)

    kinds = {f["properties"]["id"]: f["geometry"]["type"] for f in features}
    assert kinds[1] == kinds[2] == "Polygon" and kinds[4] == kinds[5] == "MultiPolygon"
    for feature in features:
        geometry = feature["geometry"]
        polygons = (
            [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
        )
        for outer, *holes in polygons:
            assert all(ring[0] == ring[-1] and len(ring) >= 5 for ring in [outer, *holes])
            # RFC 7946: exterior counter-clockwise, holes clockwise (in the coordinates)
            assert ring_area(np.array(outer[:-1])) > 0
            assert all(ring_area(np.array(h[:-1])) < 0 for h in holes)
    frame = features[ids.index(2)]["geometry"]["coordinates"]
    assert len(frame) == 2  # the frame's outer ring and its hole (holding object 3)

    table = object_table(tricky, image, metadata=meta)
    for row, feature in enumerate(features):
        props = feature["properties"]
        assert props["objectType"] == "detection" and props["name"] == str(props["id"])
        assert props["model"] == "m" and json.loads(props["knobs"]) == {"a": 1}
        assert "plane" not in props and "plane" not in feature["geometry"]
        measurements = props["measurements"]
        assert set(measurements) == set(table) - {"id", "model", "method", "backend", "knobs"}
        for column, value in measurements.items():
            assert value == pytest.approx(table[column][row]), column
        assert measurements["area"] == int((tricky == props["id"]).sum())


def test_geojson_of_a_real_image(tmp_path):
    image, truth = load_sample("nuclei2d_dsb_stardist")
    truth = truth.astype(np.uint32)
    features = labels_to_features(truth, image)["features"]
    assert len(features) == 125
    filled = {
        f["properties"]["id"]: fill_rings(geometry_rings(f["geometry"]), truth.shape)
        for f in features
    }
    assert_objects_match(filled, truth)
    assert all("mean_intensity" in f["properties"]["measurements"] for f in features)


def test_geojson_in_3d_has_one_feature_per_plane(tmp_path):
    labels = np.zeros((3, 10, 10), np.uint32)
    labels[0:2, 1:5, 1:5] = 7
    labels[1, 2:4, 2:4] = 0  # a hole on plane 1
    labels[2, 6:9, 6:9] = 9
    data = json.loads(write_geojson(tmp_path / "stack.geojson", labels).read_text())
    got = [(f["properties"]["id"], f["properties"]["plane"]) for f in data["features"]]
    assert got == [(7, 0), (7, 1), (9, 2)]
    for feature in data["features"]:
        props, geometry = feature["properties"], feature["geometry"]
        assert geometry["plane"] == {"c": -1, "z": props["plane"], "t": 0}
        mask = fill_rings(geometry_rings(geometry), labels.shape[1:])
        assert np.array_equal(mask, labels[props["plane"]] == props["id"])
        # the whole object's measurements, repeated on each of its planes
        assert props["measurements"]["area"] == int((labels == props["id"]).sum())
        assert "centroid_z" in props["measurements"]


def test_geojson_of_labels_without_objects_is_empty(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="napari_instseg"):
        path = write_geojson(tmp_path / "none.geojson", np.zeros((2, 5, 5), np.uint32))
    assert json.loads(path.read_text()) == {"type": "FeatureCollection", "features": []}
    assert "no objects" in caplog.text


def test_geojson_refuses_to_replace_a_file_and_bad_labels(tricky, tmp_path):
    path = tmp_path / "cells.geojson"
    path.write_text("old")
    with pytest.raises(InputError, match="already exists"):
        write_geojson(path, tricky)
    assert path.read_text() == "old"
    write_geojson(path, tricky, overwrite=True)
    assert len(json.loads(path.read_text())["features"]) == 7
    with pytest.raises(InputError, match="2D"):
        write_geojson(tmp_path / "x.geojson", np.zeros((2, 2, 2, 2), np.uint32))
    with pytest.raises(InputError, match="spatial shape"):
        write_geojson(tmp_path / "y.geojson", tricky, np.zeros((3, 3)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.geojson"]
