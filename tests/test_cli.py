"""The ``napari-instseg`` command line, run in-process (no Qt, no display).

A tiny untrained 3-class UNet (width 4, depth 2) stands in for a real model so that every
command runs in well under a second or two. Expected metric values are derived by hand from
object counts (TP, FP, FN), not by calling :mod:`napari_instseg.core.metrics`.
"""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import main
from napari_instseg.core.samples import sample_data_dir

MODEL = "tiny-cli-test"
NUCLEI = "nuclei2d_dsb_stardist"
#: Objects in the bundled masks (see sample_data/metadata.csv).
N_OBJECTS = {NUCLEI: 125, "nuclei3d_synthetic_stardist": 51, "phase2d_usiigaci_set1_crop512": 28}
THRESHOLDS = ("0.50", "0.60", "0.70", "0.80", "0.90")  # the CLI's default --thresholds


def run(capsys, *args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_line_error(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"napari-instseg {command}: error: "), lines[0]
    return lines[0]


# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A folder with one tiny untrained threeclass model and its card."""
    import torch

    from napari_instseg.core.checkpoint import ModelCard, save_model
    from napari_instseg.core.configs import config_from_dict, config_to_dict
    from napari_instseg.core.methods import get_method

    method = get_method("threeclass")
    cfg = config_from_dict(method.config_type, {"width": 4, "depth": 2})
    torch.manual_seed(0)
    net = method.build_net(cfg)
    card = ModelCard(
        name=MODEL,
        method=method.name,
        method_config=config_to_dict(cfg),
        backend=method.default_backend,
        modality="fluorescence",
        object_size=20.0,
        training={"data": "unit-test"},
        metrics={"test": {"ap@0.50": 0.25}},
        description="tiny untrained model for the CLI tests",
    )
    directory = tmp_path_factory.mktemp("models")
    save_model(directory, MODEL, net, card)
    return directory


@pytest.fixture
def models_env(model_dir, monkeypatch) -> Path:
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def crop(tmp_path_factory) -> Path:
    """The 2D nuclei sample cropped to 128 x 128, under the sample's own file name."""
    image = tifffile.imread(sample_data_dir() / "images" / f"{NUCLEI}.tif")
    path = tmp_path_factory.mktemp("inputs") / f"{NUCLEI}.tif"
    tifffile.imwrite(path, np.ascontiguousarray(image[:128, :128]))
    return path


@pytest.fixture(scope="module")
def gt_dir(tmp_path_factory) -> Path:
    """A folder with the three bundled sample masks."""
    directory = tmp_path_factory.mktemp("gt")
    for path in sorted((sample_data_dir() / "masks").glob("*.tif")):
        (directory / path.name).write_bytes(path.read_bytes())
    assert sorted(p.stem for p in directory.iterdir()) == sorted(N_OBJECTS)
    return directory


@pytest.fixture(scope="module")
def nuclei_gt(gt_dir) -> np.ndarray:
    labels = tifffile.imread(gt_dir / f"{NUCLEI}.tif").astype(np.uint32)
    assert np.array_equal(np.unique(labels), np.arange(N_OBJECTS[NUCLEI] + 1))
    return labels


def write_pred(directory: Path, labels: np.ndarray, name: str = NUCLEI) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(directory / f"{name}.tif", labels.astype(np.uint32))
    return directory


def evaluate_json(capsys, pred_dir: Path, gt_dir: Path) -> dict:
    rc, out, err = run(capsys, "evaluate", pred_dir, gt_dir, "--json")
    assert rc == 0, err
    return json.loads(out)


# ---------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------


def test_models_lists_the_user_model(models_env, capsys):
    rc, out, err = run(capsys, "models")
    assert rc == 0, err
    line = next(line for line in out.splitlines() if line.startswith(MODEL))
    assert "threeclass" in line and "2D" in line and "fluorescence" in line
    assert "0.250" in line and "unit-test" in line


def test_models_json_has_the_card_fields(models_env, capsys):
    rc, out, err = run(capsys, "models", "--json")
    assert rc == 0, err
    entries = json.loads(out)
    assert isinstance(entries, list)
    entry = next(e for e in entries if e["name"] == MODEL)
    assert entry["method"] == "threeclass"
    assert entry["backend"] == "watershed"
    assert entry["method_config"]["width"] == 4
    assert entry["method_config"]["depth"] == 2
    assert entry["modality"] == "fluorescence"
    assert entry["object_size"] == 20.0
    assert entry["metrics"] == {"test": {"ap@0.50": 0.25}}
    assert len(entry["weights_sha256"]) == 64
    assert entry["versions"]["torch"]
    assert Path(entry["path"]) == models_env / f"{MODEL}.json"


def test_models_model_dir_option(model_dir, monkeypatch, capsys):
    monkeypatch.delenv("NAPARI_INSTSEG_MODEL_DIRS", raising=False)
    rc, out, _ = run(capsys, "models", "--json")
    assert rc == 0
    assert MODEL not in {e["name"] for e in json.loads(out)}
    rc, out, _ = run(capsys, "models", "--json", "--model-dir", model_dir)
    assert rc == 0
    assert MODEL in {e["name"] for e in json.loads(out)}


# ---------------------------------------------------------------------------
# segment
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("knobs", [[], ["--set", "min_size=5"]], ids=["defaults", "min_size"])
def test_segment_writes_uint32_labels(models_env, crop, tmp_path, capsys, knobs):
    out_dir = tmp_path / "out"
    rc, out, err = run(
        capsys, "segment", crop, "--model", MODEL, "--output", out_dir, "--device", "cpu", *knobs
    )
    assert rc == 0, err
    written = sorted(out_dir.glob("*.tif"))
    assert [p.name for p in written] == [crop.name]
    how = json.loads(written[0].with_suffix(".json").read_text())  # how they were made
    assert how["model"] == MODEL and how["image"] == str(crop)
    assert set(how["knobs"]) and "modality" in how
    labels = tifffile.imread(written[0])
    assert labels.dtype == np.uint32
    assert labels.shape == (128, 128)
    assert f"{crop.name}: {int(labels.max())} objects" in out


def test_segment_folder_with_tif_and_zarr(models_env, crop, tmp_path, capsys):
    import zarr

    folder = tmp_path / "in"
    folder.mkdir()
    image = tifffile.imread(crop)
    tifffile.imwrite(folder / "a.tif", image)
    arr = zarr.create_array(str(folder / "b.zarr"), shape=image.shape, dtype=image.dtype)
    arr[...] = image
    (folder / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "out"
    rc, out, err = run(capsys, "segment", folder, "--model", MODEL, "--output", out_dir)
    assert rc == 0, err
    assert sorted(p.name for p in out_dir.glob("*.tif")) == ["a.tif", "b.tif"]
    a, b = (tifffile.imread(out_dir / n) for n in ("a.tif", "b.tif"))
    np.testing.assert_array_equal(a, b)  # same pixels in, same labels out, whatever the format


def test_segment_unknown_knob_is_refused(models_env, crop, tmp_path, capsys):
    out_dir = tmp_path / "out"
    rc, _, err = run(
        capsys, "segment", crop, "--model", MODEL, "--output", out_dir, "--set", "nonsense=1"
    )
    assert rc != 0
    assert "nonsense" in one_line_error(err, "segment")
    assert not out_dir.exists()  # refused before any work


def test_segment_missing_input(models_env, tmp_path, capsys):
    missing = tmp_path / "no_such_image.tif"
    rc, _, err = run(capsys, "segment", missing, "--model", MODEL, "--output", tmp_path / "out")
    assert rc != 0
    line = one_line_error(err, "segment")
    assert "not found" in line and "no_such_image.tif" in line


def test_segment_png_input(models_env, tmp_path, capsys):
    from PIL import Image

    png = tmp_path / "cells.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(png)
    rc, _, err = run(capsys, "segment", png, "--model", MODEL, "--output", tmp_path / "out")
    assert rc != 0
    line = one_line_error(err, "segment")
    assert ".png" in line


def test_segment_unknown_model(models_env, crop, tmp_path, capsys):
    rc, _, err = run(
        capsys, "segment", crop, "--model", "no-such-model", "--output", tmp_path / "out"
    )
    assert rc != 0
    assert "no-such-model" in one_line_error(err, "segment")


# ---------------------------------------------------------------------------
# evaluate
# ---------------------------------------------------------------------------


def test_evaluate_ground_truth_against_itself(gt_dir, capsys):
    rc, out, err = run(capsys, "evaluate", gt_dir, gt_dir)
    assert rc == 0, err
    lines = out.strip().splitlines()
    header = lines[0].split()
    assert header[0] == "image"
    ap_cols = [i for i, key in enumerate(header) if key.startswith("ap@")]
    assert [header[i] for i in ap_cols] == [f"ap@{t}" for t in THRESHOLDS]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == {*N_OBJECTS, "mean"}
    for values in rows.values():
        assert [values[i] for i in ap_cols] == ["1.000"] * len(THRESHOLDS)
    n_true = header.index("n_true")
    assert rows["mean"][n_true] == str(sum(N_OBJECTS.values()))

    data = evaluate_json(capsys, gt_dir, gt_dir)
    assert set(data["images"]) == set(N_OBJECTS)
    assert data["missing_predictions"] == []
    for row in [*data["images"].values(), data["mean"]]:
        scores = {k: v for k, v in row.items() if not k.startswith("n_")}
        assert all(f"ap@{t}" in scores for t in THRESHOLDS)
        assert scores == {k: 1.0 for k in scores}
    for name, n in N_OBJECTS.items():
        assert data["images"][name]["n_true"] == data["images"][name]["n_pred"] == n
    assert data["mean"]["n_images"] == 3


def test_evaluate_removed_objects(gt_dir, nuclei_gt, tmp_path, capsys):
    n, k = N_OBJECTS[NUCLEI], 7
    removed = np.arange(1, n + 1)[::18][:k]  # 7 objects spread over the id range
    assert removed.size == k
    pred = np.where(np.isin(nuclei_gt, removed), 0, nuclei_gt)
    pred_dir = write_pred(tmp_path / "pred", pred)

    data = evaluate_json(capsys, pred_dir, gt_dir)
    row = data["images"][NUCLEI]
    # Every kept object is predicted exactly: TP = n - k, FP = 0, FN = k at every threshold.
    tp, fp, fn = n - k, 0, k
    for t in THRESHOLDS:
        assert row[f"ap@{t}"] == tp / (tp + fp + fn) == 118 / 125
        assert row[f"precision@{t}"] == 1.0
        assert row[f"recall@{t}"] == tp / (tp + fn)
        assert row[f"f1@{t}"] == 2 * tp / (2 * tp + fp + fn) == 236 / 243
    assert row["map@0.50:0.95"] == pytest.approx(118 / 125, rel=1e-12)
    assert row["sbd"] == pytest.approx(118 / 125, rel=1e-12)  # removed objects: Dice 0
    assert (row["n_true"], row["n_pred"]) == (n, n - k)
    assert sorted(data["missing_predictions"]) == sorted(set(N_OBJECTS) - {NUCLEI})
    # The two images with no prediction are misses (AP 0), not left out of the mean.
    assert data["mean"]["ap@0.50"] == pytest.approx(118 / 125 / 3)
    assert data["mean"]["n_images"] == 3

    rc, out, err = run(capsys, "evaluate", pred_dir, gt_dir)
    assert rc == 0
    mean = out.strip().splitlines()[-1].split()
    assert mean[:2] == ["mean", f"{118 / 125 / 3:.3f}"] == ["mean", "0.315"]
    assert "2 ground-truth image(s) have no prediction" in err


def _touching(labels: np.ndarray, a: int, b: int) -> bool:
    for x, y in ((labels[:, 1:], labels[:, :-1]), (labels[1:, :], labels[:-1, :])):
        if np.any((x == a) & (y == b)) or np.any((x == b) & (y == a)):
            return True
    return False


@pytest.mark.parametrize(
    ("a", "b", "expected_ap"),
    [
        # 496 + 227 px: the merged object's IoU with object 41 is 496/723 = 0.686.
        (41, 105, [124 / 125, 124 / 125, 123 / 126, 123 / 126, 123 / 126]),
        # 403 + 389 px: IoU 403/792 = 0.509, matched only at 0.5.
        (14, 74, [124 / 125, 123 / 126, 123 / 126, 123 / 126, 123 / 126]),
    ],
)
def test_evaluate_merged_touching_objects(gt_dir, nuclei_gt, tmp_path, capsys, a, b, expected_ap):
    n = N_OBJECTS[NUCLEI]
    assert _touching(nuclei_gt, a, b)
    size_a, size_b = np.count_nonzero(nuclei_gt == a), np.count_nonzero(nuclei_gt == b)
    pred = np.where(nuclei_gt == b, a, nuclei_gt)
    pred_dir = write_pred(tmp_path / "pred", pred)

    # The merged object overlaps only a and b; its IoU with each is that object's share of
    # the union. Only the larger share can pass a threshold >= 0.5; the smaller object is
    # then a FN. The other n - 2 objects are exact matches.
    iou_big = max(size_a, size_b) / (size_a + size_b)
    n_pred = n - 1
    row = evaluate_json(capsys, pred_dir, gt_dir)["images"][NUCLEI]
    for t, expected in zip(THRESHOLDS, expected_ap, strict=True):
        tp = n - 1 if iou_big >= float(t) else n - 2
        fp, fn = n_pred - tp, n - tp
        assert row[f"ap@{t}"] == tp / (tp + fp + fn) == expected
        assert row[f"f1@{t}"] == 2 * tp / (2 * tp + fp + fn)
    assert (row["n_true"], row["n_pred"]) == (n, n_pred)


def test_evaluate_shifted_squares(tmp_path, capsys):
    # 25 squares of 10 x 10 px; the prediction is shifted 2 px to the right.
    # IoU = (8 * 10) / (12 * 10) = 2/3, Dice = 0.8, for every object.
    gt = np.zeros((128, 128), np.uint32)
    for i in range(5):
        for j in range(5):
            gt[10 + 24 * i : 20 + 24 * i, 10 + 24 * j : 20 + 24 * j] = 1 + 5 * i + j
    pred = np.zeros_like(gt)
    pred[:, 2:] = gt[:, :-2]
    gt_dir = write_pred(tmp_path / "gt", gt, "squares")
    pred_dir = write_pred(tmp_path / "pred", pred, "squares")

    row = evaluate_json(capsys, pred_dir, gt_dir)["images"]["squares"]
    # IoU 2/3 passes 0.5 and 0.6 (TP 25, FP 0, FN 0), fails 0.7+ (TP 0, FP 25, FN 25).
    assert [row[f"ap@{t}"] for t in THRESHOLDS] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert [row[f"f1@{t}"] for t in THRESHOLDS] == [1.0, 1.0, 0.0, 0.0, 0.0]
    # DSB thresholds 0.50, 0.55, 0.60, 0.65 pass: 4 of 10.
    assert row["map@0.50:0.95"] == pytest.approx(0.4)
    assert row["sbd"] == pytest.approx(0.8)


def _brute_force_ap(gt: np.ndarray, pred: np.ndarray, t: float) -> float:
    """AP from the IoU of every overlapping pair, with plain boolean masks.

    For thresholds of 0.5 and above each object has at most one partner with IoU >= t
    (barring two exact ties at 0.5, checked below), so the number of such pairs is TP.
    """
    pairs = []
    for i in np.unique(gt)[1:]:
        in_i = gt == i
        for j in np.unique(pred[in_i]):
            if j == 0:
                continue
            in_j = pred == j
            iou = np.count_nonzero(in_i & in_j) / np.count_nonzero(in_i | in_j)
            if iou >= t:
                pairs.append((i, j))
    true_ids, pred_ids = zip(*pairs, strict=True) if pairs else ((), ())
    assert len(set(true_ids)) == len(set(pred_ids)) == len(pairs)  # a one-to-one matching
    tp = len(pairs)
    n_true, n_pred = np.unique(gt).size - 1, np.unique(pred).size - 1
    return tp / (n_true + n_pred - tp)


def test_evaluate_shifted_sample_mask(gt_dir, nuclei_gt, tmp_path, capsys):
    pred = np.zeros_like(nuclei_gt)
    pred[:, 2:] = nuclei_gt[:, :-2]  # 2 px to the right
    pred_dir = write_pred(tmp_path / "pred", pred)
    row = evaluate_json(capsys, pred_dir, gt_dir)["images"][NUCLEI]
    values = [row[f"ap@{t}"] for t in THRESHOLDS]
    for t, value in zip(THRESHOLDS, values, strict=True):
        assert value == pytest.approx(_brute_force_ap(nuclei_gt, pred, float(t)), abs=1e-12)
    assert values == sorted(values, reverse=True)
    assert values[-1] < values[0] < 1


def test_evaluate_missing_folders(gt_dir, tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for pred_dir, gt in ((missing, gt_dir), (gt_dir, missing)):
        rc, _, err = run(capsys, "evaluate", pred_dir, gt)
        assert rc != 0
        assert str(missing) in one_line_error(err, "evaluate")


def test_evaluate_no_common_names(gt_dir, tmp_path, capsys):
    pred_dir = write_pred(tmp_path / "pred", np.zeros((8, 8), np.uint32), "unrelated")
    rc, _, err = run(capsys, "evaluate", pred_dir, gt_dir)
    assert rc != 0
    assert "no file names in common" in one_line_error(err, "evaluate")
    rc, _, err = run(capsys, "evaluate", tmp_path / "pred", tmp_path / "pred", "--json")
    assert rc == 0  # the same folder twice is fine


def test_evaluate_shape_mismatch(gt_dir, tmp_path, capsys):
    pred_dir = write_pred(tmp_path / "pred", np.zeros((8, 8), np.uint32))
    rc, _, err = run(capsys, "evaluate", pred_dir, gt_dir)
    assert rc != 0
    assert NUCLEI in one_line_error(err, "evaluate")


# ---------------------------------------------------------------------------
# train
# ---------------------------------------------------------------------------


def make_shared_layout(root: Path) -> Path:
    """A tiny dataset in the shared layout: crops of the 2D nuclei sample."""
    image = tifffile.imread(sample_data_dir() / "images" / f"{NUCLEI}.tif")
    labels = tifffile.imread(sample_data_dir() / "masks" / f"{NUCLEI}.tif").astype(np.uint32)
    crops = {
        "crop_a": ((slice(0, 96), slice(0, 96)), "train"),
        "crop_b": ((slice(256, 352), slice(256, 352)), "train"),
        "crop_c": ((slice(400, 464), slice(64, 128)), "val"),
    }
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "split"])
        for name, (window, split) in crops.items():
            assert labels[window].any()
            tifffile.imwrite(root / "images" / f"{name}.tif", np.ascontiguousarray(image[window]))
            tifffile.imwrite(root / "masks" / f"{name}.tif", np.ascontiguousarray(labels[window]))
            writer.writerow([name, split])
    return root


@pytest.mark.slow
def test_train_then_segment(tmp_path, crop, capsys, monkeypatch):
    from napari_instseg.core.checkpoint import read_card

    monkeypatch.delenv("NAPARI_INSTSEG_MODEL_DIRS", raising=False)
    data = make_shared_layout(tmp_path / "data")
    out_dir = tmp_path / "run"
    rc, out, err = run(
        capsys,
        "train",
        "--method", "threeclass",
        "--data", data,
        "--output", out_dir,
        "--name", "tiny-trained",
        "--iterations", "4",
        "--batch-size", "2",
        "--patch-size", "32",
        "--val-every", "2",
        "--device", "cpu",
        "--set", "width=4",
        "--set", "depth=2",
    )  # fmt: skip
    assert rc == 0, err
    assert "4 iterations" in out and str(out_dir) in out
    for kind in ("best", "latest"):
        assert (out_dir / f"{kind}.json").is_file()
        assert (out_dir / f"{kind}.safetensors").is_file()
    best, latest = read_card(out_dir / "best.json"), read_card(out_dir / "latest.json")
    assert best.name == latest.name == "tiny-trained"
    assert best.method == "threeclass"
    assert (best.method_config["width"], best.method_config["depth"]) == (4, 2)
    assert latest.training["iterations_done"] == 4
    assert best.training["train_images"] == ["crop_a", "crop_b"]
    assert best.training["val_images"] == ["crop_c"]

    seg_dir = tmp_path / "seg"
    rc, out, err = run(
        capsys,
        "segment", crop,
        "--model", out_dir / "best.json",
        "--output", seg_dir,
        "--device", "cpu",
    )  # fmt: skip
    assert rc == 0, err
    labels = tifffile.imread(seg_dir / crop.name)
    assert labels.dtype == np.uint32 and labels.shape == (128, 128)


@pytest.mark.slow
def test_ctrl_c_stops_a_training_and_keeps_its_steps(tmp_path, monkeypatch):
    import os
    import signal
    import time

    from napari_instseg.core.checkpoint import read_card

    monkeypatch.delenv("NAPARI_INSTSEG_MODEL_DIRS", raising=False)
    data = make_shared_layout(tmp_path / "data")
    out_dir = tmp_path / "run"
    code = "import sys; from napari_instseg.cli import main; sys.exit(main(sys.argv[1:]))"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "train", "--method", "threeclass", "--data", str(data),
         "--output", str(out_dir), "--iterations", "100000", "--batch-size", "1",
         "--patch-size", "32", "--val-every", "20", "--device", "cpu",
         "--set", "width=4", "--set", "depth=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 240
        while not (out_dir / "latest.json").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 240 s"
            time.sleep(0.2)
        time.sleep(1.0)  # some steps past the first checkpoint
        seen = read_card(out_dir / "latest.json").training["iterations_done"]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping after this step" in err
    assert "stopped" in out
    done = read_card(out_dir / "latest.json").training["iterations_done"]
    assert seen <= done < 100000  # the steps since the last checkpoint were written


@pytest.mark.slow
def test_train_allcell_on_two_folders_then_segment_reports_the_route(
    tmp_path, crop, capsys, monkeypatch
):
    """One model for two datasets: anchors fitted to both, the route printed and saved."""
    from napari_instseg.core.checkpoint import read_card

    monkeypatch.delenv("NAPARI_INSTSEG_MODEL_DIRS", raising=False)
    first = make_shared_layout(tmp_path / "a")
    second = make_shared_layout(tmp_path / "b")
    out_dir = tmp_path / "run"
    rc, out, err = run(
        capsys,
        "train",
        "--method", "allcell",
        "--data", first,
        "--data", second,
        "--val-split", "",
        "--output", out_dir,
        "--iterations", "2",
        "--batch-size", "2",
        "--patch-size", "32",
        "--device", "cpu",
        "--set", "width=4",
        "--set", "depth=4",
    )  # fmt: skip
    assert rc == 0, err
    card = read_card(out_dir / "latest.json")
    assert len(card.method_config["anchors"]) == 6  # three fitted (height, width) pairs
    assert card.training["data"] == "a+b"
    assert card.training["train_images"] == ["crop_a", "crop_b"] * 2
    seg_dir = tmp_path / "seg"
    rc, out, err = run(
        capsys, "segment", crop, "--model", out_dir / "latest.json", "--output", seg_dir
    )
    assert rc == 0, err
    assert "fluorescence image: detection route" in out
    how = json.loads((seg_dir / crop.with_suffix(".json").name).read_text())
    assert how["report"]["route"] == "detection" and how["modality"] == "fluorescence"


# ---------------------------------------------------------------------------
# console script
# ---------------------------------------------------------------------------


def test_console_script_help():
    script = Path(sys.executable).parent / "napari-instseg"
    assert script.exists(), f"console script missing next to {sys.executable}"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for command in ("models", "segment", "evaluate", "train"):
        assert command in proc.stdout


def test_segment_notes_an_image_of_another_modality(tmp_path, capsys):
    image = tifffile.imread(sample_data_dir() / "images" / "phase2d_usiigaci_set1_crop512.tif")
    path = tmp_path / "cells.tif"
    tifffile.imwrite(path, np.ascontiguousarray(image[:128, :128]))
    rc, out, err = run(
        capsys, "segment", path, "--model", "threeclass-nuclei", "--output", tmp_path / "o"
    )
    assert rc == 0, err
    assert "cells.tif looks like phase-contrast" in err
    assert "threeclass-nuclei was trained on fluorescence images" in err
    rc, out, err = run(
        capsys, "segment", path, "--model", "embedseg-cells", "--output", tmp_path / "o2"
    )
    assert rc == 0 and "note:" not in err  # a phase-contrast model: nothing to note


def test_models_lists_each_dataset_of_a_multi_dataset_model(capsys):
    rc, out, _ = run(capsys, "models")
    assert rc == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("allcell "))
    assert "any" in line and "dsb2018_fluo+usiigaci_phase" in line
    assert re.search(r"\b0\.\d{3}/0\.\d{3}\b", line)


def test_segment_rgb_stained_image_with_appearance_and_diameter(tmp_path, capsys, stained):
    path = tmp_path / "stained.tif"
    tifffile.imwrite(path, stained.stained_like(stained.nuclei_sample()))  # (Y, X, 3) uint8
    rc, out, err = run(
        capsys,
        "segment",
        path,
        "--model",
        "embedseg-nuclei",
        "--output",
        tmp_path / "o",
        "--diameter",
        "30",
    )
    assert rc == 0, err
    assert "appearance stain" in out and "diameter 30.0 px (given)" in out
    how = json.loads((tmp_path / "o" / "stained.json").read_text())
    assert how["appearance"]["mode"] == "stain"
    assert how["diameter"]["source"] == "given" and how["diameter"]["diameter"] == 30.0
    labels = tifffile.imread(tmp_path / "o" / "stained.tif")
    assert labels.shape == (256, 256) and labels.max() > 20
    rc, out, err = run(
        capsys,
        "segment",
        path,
        "--model",
        "embedseg-nuclei",
        "--output",
        tmp_path / "o2",
        "--appearance",
        "as-is",
        "--diameter",
        "off",
    )
    assert rc == 0, err
    how = json.loads((tmp_path / "o2" / "stained.json").read_text())
    assert how["appearance"]["mode"] == "as-is" and how["diameter"]["factor"] == 1.0


@pytest.mark.parametrize(
    "value,words",
    [
        ("-3", "positive"),
        ("nan", "positive"),
        ("big", "'auto', 'off'"),
        ("5000", "larger than the image"),
    ],
)
def test_segment_bad_diameter_is_one_line(crop, tmp_path, capsys, value, words):
    rc, _, err = run(
        capsys,
        "segment",
        crop,
        "--model",
        "embedseg-nuclei",
        "--output",
        tmp_path / "o",
        "--diameter",
        value,
    )
    assert rc == 2
    assert words in one_line_error(err, "segment")


@pytest.mark.slow
def test_train_on_stained_colour_with_appearance_augmentation_and_a_warm_start(
    tmp_path, capsys, monkeypatch, stained
):
    """RGB stained images in the shared layout, one kind kept, mapped like segmenting maps
    them, every augmentation on, and a second run warm-started from the first."""
    from napari_instseg.core.checkpoint import read_card

    monkeypatch.delenv("NAPARI_INSTSEG_MODEL_DIRS", raising=False)
    data = make_shared_layout(tmp_path / "data")
    rows = (data / "metadata.csv").read_text().splitlines()
    kinds = {"crop_a": "stained_colour", "crop_b": "stained_colour", "crop_c": "other"}
    for name in kinds:  # the same crops, as H&E-looking RGB
        path = data / "images" / f"{name}.tif"
        tifffile.imwrite(path, stained.stained_like(tifffile.imread(path).astype(np.float32)))
    (data / "metadata.csv").write_text(
        "\n".join([rows[0] + ",kind"] + [f"{r},{kinds[r.split(',')[0]]}" for r in rows[1:]])
    )
    common = [
        "train", "--method", "threeclass", "--data", data, "--kind", "stained_colour",
        "--val-split", "", "--appearance", "auto", "--iterations", "3", "--batch-size", "2",
        "--patch-size", "32", "--device", "cpu", "--set", "width=4", "--set", "depth=2",
        "--augment", "zoom=2", "--augment", "gamma=1.5", "--augment", "blur_prob=1",
        "--augment", "noise=0.05", "--augment", "invert_prob=0.5",
    ]  # fmt: skip
    rc, out, err = run(capsys, *common, "--output", tmp_path / "a", "--name", "a")
    assert rc == 0, err
    card = read_card(tmp_path / "a" / "latest.json")
    assert card.training["train_images"] == ["crop_a", "crop_b"]  # crop_c is another kind
    assert card.training["augment"]["zoom"] == 2.0 and card.object_size > 5
    rc, out, err = run(
        capsys, *common, "--output", tmp_path / "b", "--name", "b",
        "--init", tmp_path / "a" / "latest.json",
    )  # fmt: skip
    assert rc == 0, err
    assert read_card(tmp_path / "b" / "latest.json").parent == str(tmp_path / "a" / "latest.json")
    rc, _, err = run(capsys, *common, "--output", tmp_path / "c", "--augment", "zoom=big")
    assert rc == 2 and "zoom" in err
