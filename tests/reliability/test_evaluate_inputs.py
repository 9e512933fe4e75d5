"""`evaluate`: a missing prediction is a miss, binary ground truth is pointed out, and labels
are read and paired the way `segment` and `export` write them (X.tif, X.zarr, X.ome.zarr)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from _faults import one_line, run


def squares(n: int, *, binary: bool = False) -> np.ndarray:
    """``n`` separate 8 x 8 squares on a 64 x 64 image, ids 1..n (or all 1)."""
    labels = np.zeros((64, 64), np.uint32)
    for i in range(n):
        y, x = divmod(i, 4)
        labels[4 + 15 * y : 12 + 15 * y, 4 + 15 * x : 12 + 15 * x] = 1 if binary else i + 1
    return labels


def write(folder, name: str, labels: np.ndarray):
    folder.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(folder / name, labels)


def evaluate(capsys, pred, gt, *options):
    rc, out, err = run(capsys, "evaluate", pred, gt, *options)
    assert rc == 0, err
    return out, err


def test_a_missing_prediction_is_a_miss(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write(gt, "a.tif", squares(5))
    write(gt, "b.tif", squares(3))
    write(pred, "a.tif", squares(5))  # perfect on a, nothing for b
    out, err = evaluate(capsys, pred, gt, "--json")
    data = json.loads(out)
    assert data["images"]["a"]["ap@0.50"] == 1.0
    assert data["images"]["b"]["ap@0.50"] == 0.0
    assert data["images"]["b"]["n_true"] == 3 and data["images"]["b"]["n_pred"] == 0
    assert data["mean"]["ap@0.50"] == 0.5 and data["mean"]["n_images"] == 2
    assert data["missing_predictions"] == ["b"]
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: 1 ground-truth image(s) have no prediction")
    assert "count as misses (AP 0): b" in line

    out, _ = evaluate(capsys, pred, gt)
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "(no prediction: a miss)" in rows["b"] and "miss" not in rows["a"]
    assert rows["mean"].split()[1] == "0.500"


def test_binary_ground_truth_is_pointed_out(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write(gt, "semantic.tif", squares(5, binary=True))
    write(gt, "single.tif", squares(1))  # one object: 0/1, but instance labels all the same
    write(pred, "semantic.tif", squares(5))
    write(pred, "single.tif", squares(1))
    out, err = evaluate(capsys, pred, gt, "--json")
    assert json.loads(out)["images"]["semantic"]["ap@0.50"] == 0.0  # scored, and said why
    (line,) = err.strip().splitlines()
    assert line.startswith("warning: ground truth semantic is binary (0/1)")
    assert "single" not in line


@pytest.mark.parametrize("suffix", [".ome.zarr", ".zarr", ".ome.tif"])
def test_predictions_are_paired_by_image_name(tmp_path, capsys, suffix):
    from napari_instseg.core.io.ome_zarr import write_ome_zarr
    from napari_instseg.core.io.tiff import write_labels_tiff
    from napari_instseg.core.io.zarr import write_labels_zarr

    gt, pred = tmp_path / "gt", tmp_path / "pred"
    labels = squares(6)
    write(gt, "X.tif", labels)
    pred.mkdir()
    if suffix == ".ome.zarr":
        # An image pyramid next to the labels: the labels are what is scored.
        image = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
        write_ome_zarr(pred / "X.ome.zarr", image, labels, image_name="X")
    elif suffix == ".zarr":
        write_labels_zarr(pred / "X.zarr", labels)
    else:
        write_labels_tiff(pred / "X.ome.tif", labels)
    out, err = evaluate(capsys, pred, gt, "--json")
    data = json.loads(out)
    assert data["missing_predictions"] == [] and err == ""
    assert data["images"]["X"]["ap@0.50"] == 1.0


def test_two_labels_for_one_image_are_refused(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write(gt, "X.tif", squares(2))
    write(pred, "X.tif", squares(2))
    write(pred, "X.ome.tif", squares(1))
    rc, _, err = run(capsys, "evaluate", pred, gt)
    assert rc == 2
    line = one_line(err, "evaluate")
    assert "X.ome.tif" in line and "X.tif" in line


def test_a_staged_leftover_is_not_a_prediction(tmp_path, capsys):
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    write(gt, "X.tif", squares(2))
    write(pred, "X.tif", squares(2))
    (pred / ".X.tif.partial-1-abc.tif").write_bytes(b"half a file")
    out, err = evaluate(capsys, pred, gt, "--json")
    assert json.loads(out)["images"]["X"]["ap@0.50"] == 1.0 and err == ""


@pytest.mark.parametrize(
    ("labels", "words"),
    [
        (squares(3).astype(np.float32) + 0.5, "whole numbers"),
        (-squares(3).astype(np.int32), "non-negative"),
    ],
    ids=["fractional", "negative"],
)
def test_labels_that_are_not_labels_are_named(tmp_path, capsys, labels, words):
    write(tmp_path / "gt", "a.tif", labels)
    write(tmp_path / "pred", "a.tif", squares(3))
    rc, _, err = run(capsys, "evaluate", tmp_path / "pred", tmp_path / "gt")
    assert rc == 2
    line = one_line(err, "evaluate")
    assert f"{tmp_path / 'gt' / 'a.tif'}: labels must" in line and words in line
