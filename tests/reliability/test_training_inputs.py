"""Training inputs that cannot make a useful model: all-empty masks are refused before any
work; too little annotation for a fine-tune is a warning; resuming a run folder whose weights
do not fit the network is one line, exit 2, and the run folder is left as it was."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile
from _faults import one_line, run, snapshot

from napari_instseg.core.arrays import InputError
from napari_instseg.core.checkpoint import CheckpointError, load_weights, save_state
from napari_instseg.core.configs import config_from_dict
from napari_instseg.core.data.datasets import load_folder
from napari_instseg.core.data.sparse import BACKGROUND_LABEL, annotation_warnings
from napari_instseg.core.methods import get_method


def shared_layout(root, masks: dict[str, np.ndarray], val: tuple[str, ...] = ()):
    """Images and masks in the shared layout; the names in ``val`` are the val split."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "split"])
        for name, mask in masks.items():
            tifffile.imwrite(root / "images" / f"{name}.tif", rng.random(mask.shape, np.float32))
            tifffile.imwrite(root / "masks" / f"{name}.tif", mask)
            writer.writerow([name, "val" if name in val else "train"])
    return root


def net(width: int):
    method = get_method("threeclass")
    return method.build_net(config_from_dict(method.config_type, {"depth": 2, "width": width}))


# -- all-empty masks -------------------------------------------------------------------------
def test_training_on_all_empty_masks_is_refused_before_any_work(tmp_path, capsys):
    empty = np.zeros((64, 64), np.uint32)
    data = shared_layout(tmp_path / "data", {"a": empty, "b": empty})
    out = tmp_path / "run"
    rc, _, err = run(
        capsys, "train", "--method", "threeclass", "--data", data, "--output", out,
        "--iterations", "2",
    )  # fmt: skip
    assert rc == 2
    line = one_line(err, "train")
    assert "the 2 masks in" in line and str(data / "masks") in line and "no objects" in line
    assert not out.exists()  # no model, no run folder


def test_one_mask_with_objects_is_enough(tmp_path):
    empty, one = np.zeros((64, 64), np.uint32), np.zeros((64, 64), np.uint32)
    one[10:20, 10:20] = 1
    data = shared_layout(tmp_path / "data", {"a": empty, "b": one})
    assert [s.labels.max() for s in load_folder(data, split="train")] == [0, 1]
    with pytest.raises(InputError, match=r"the mask in .* for split 'train' hold no objects"):
        load_folder(data, split="train", names=["a"])


# -- too little to fine-tune from -------------------------------------------------------------
def test_one_three_pixel_object_gets_both_warnings():
    annotation = np.zeros((64, 64), np.uint32)
    annotation[5, 5:8] = 1
    annotation[30:40, 30:40] = BACKGROUND_LABEL  # painted background is not an object
    few, tiny = annotation_warnings([annotation], names=["cells.tif"])
    assert few.startswith("only 1 annotated object:")
    assert tiny.startswith("1 annotated object is smaller than 9 pixels (in cells.tif: 3 px)")


def test_enough_whole_objects_get_no_warning():
    a, b = np.zeros((64, 64), np.uint32), np.zeros((64, 64), np.uint32)
    a[5:15, 5:15], a[20:30, 20:30] = 1, 2
    b[40:50, 40:50] = 1  # three objects over two images
    assert annotation_warnings([a, b]) == []
    b[60, 60] = 7
    (warning,) = annotation_warnings([a, b], names=["a", "b"])
    assert "(in b: 1 px)" in warning


# -- resuming with another architecture -------------------------------------------------------
def test_weights_that_do_not_fit_are_one_line():
    with pytest.raises(CheckpointError) as refused:
        load_weights(net(8), net(4).state_dict(), what="the run in R", hint="do X")
    text = str(refused.value)
    assert text.startswith("the run in R: the weights do not fit this network (")
    assert "encoders.0.0.weight: saved (4, 1, 3, 3), needed (8, 1, 3, 3)" in text
    assert text.endswith("; do X") and "\n" not in text
    load_weights(net(8), net(8).state_dict())  # fitting weights load


@pytest.fixture
def foreign_run(tmp_path):
    """A run folder whose checkpoint is of a narrower network than the one asked for."""
    folder = tmp_path / "run"
    folder.mkdir()
    save_state(folder / "latest.safetensors", net(4).state_dict())
    save_state(folder / "latest.state.safetensors", {"step": 1})
    return folder


def test_resume_with_another_architecture_is_one_line(tmp_path, capsys, foreign_run):
    mask = np.zeros((64, 64), np.uint32)
    mask[10:30, 10:30] = 1
    data = shared_layout(tmp_path / "data", {"a": mask, "b": mask}, val=("b",))
    before = snapshot(foreign_run)
    rc, _, err = run(
        capsys, "train", "--method", "threeclass", "--data", data, "--output", foreign_run,
        "--resume", "--set", "depth=2", "--set", "width=8", "--iterations", "2",
    )  # fmt: skip
    assert rc == 2
    line = one_line(err, "train")
    assert str(foreign_run) in line and "do not fit this network" in line
    assert snapshot(foreign_run) == before


def test_finetune_resume_with_another_architecture_is_one_line(
    image, tmp_path, capsys, monkeypatch, save_tiny_spoco, foreign_run
):
    save_tiny_spoco(tmp_path / "zoo")
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", str(tmp_path / "zoo"))
    annotation = np.zeros((64, 64), np.uint32)
    annotation[10:20, 10:20], annotation[30:40, 30:40], annotation[45:55, 5:15] = 1, 2, 3
    tifffile.imwrite(tmp_path / "ann.tif", annotation)
    before = snapshot(foreign_run)
    rc, _, err = run(
        capsys, "train", "--from", "spoco-tiny", "--images", image, "--annotations",
        tmp_path / "ann.tif", "--output", foreign_run, "--resume", "--iterations", "2",
        "--models-dir", tmp_path / "models",
    )  # fmt: skip
    assert rc == 2
    assert "do not fit this network" in one_line(err, "train")
    assert snapshot(foreign_run) == before
    assert not (tmp_path / "models").exists() or not list((tmp_path / "models").glob("*.json"))


def test_finetune_from_one_tiny_object_warns(image, tmp_path, capsys, monkeypatch, save_tiny_spoco):
    save_tiny_spoco(tmp_path / "zoo")
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", str(tmp_path / "zoo"))
    annotation = np.zeros((64, 64), np.uint32)
    annotation[20, 20:23] = 1  # one 3-pixel object
    tifffile.imwrite(tmp_path / "ann.tif", annotation)
    rc, _, err = run(
        capsys, "train", "--from", "spoco-tiny", "--images", image, "--annotations",
        tmp_path / "ann.tif", "--iterations", "2", "--val-every", "2",
        "--models-dir", tmp_path / "models", "--output", tmp_path / "run",
    )  # fmt: skip
    assert rc == 0, err
    assert "warning: only 1 annotated object" in err
    assert "warning: 1 annotated object is smaller than 9 pixels (in cells: 3 px)" in err
