"""`napari-instseg train --from MODEL`: the widget's fine-tune, headless."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import main
from napari_instseg.core.checkpoint import read_card
from napari_instseg.core.data.sparse import BACKGROUND_LABEL
from napari_instseg.core.project import Project
from napari_instseg.core.samples import load_sample


def run(capsys, *args):
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


@pytest.fixture
def parent(tmp_path, save_tiny_spoco):
    return save_tiny_spoco(tmp_path / "zoo")


@pytest.fixture
def pair(tmp_path):
    image, truth = load_sample("nuclei2d_dsb_stardist")
    image, truth = image[:64, :64], truth[:64, :64]
    annotation = np.where(np.isin(truth, np.unique(truth)[1:6]), truth, 0).astype(np.uint32)
    annotation[:4, :4] = BACKGROUND_LABEL
    tifffile.imwrite(tmp_path / "img.tif", image)
    tifffile.imwrite(tmp_path / "ann.tif", annotation)
    return image, annotation


FAST = ("--iterations", "4", "--batch-size", "2", "--patch-size", "32", "--device", "cpu")


def test_finetune_from_files(tmp_path, capsys, parent, pair):
    rc, out, err = run(
        capsys, "train", "--from", parent, "--images", tmp_path / "img.tif",
        "--annotations", tmp_path / "ann.tif", "--models-dir", tmp_path / "models",
        "--output", tmp_path / "run", "--held-out", "0.25", "--anchor-weight", "2",
        "--keep-knobs", *FAST,
    )  # fmt: skip
    assert rc == 0, err
    # 5 objects at 0.25 hold out 1: too few to judge by (MIN_HELD_OUT_OBJECTS = 5 -> 20)
    assert "held-out AP cannot be judged (1 object held out; annotate at least 20)" in out
    assert "spoco-tiny-finetuned" in out and "compared with spoco-tiny, where you did" in out
    card = read_card(tmp_path / "models" / "spoco-tiny-finetuned.json")
    n_objects = len(set(np.unique(pair[1]).tolist()) - {0, BACKGROUND_LABEL})
    assert card.parent == "spoco-tiny" and card.training["annotations"][0]["objects"] == n_objects
    assert card.training["finetune_config"]["held_out_fraction"] == 0.25
    assert card.training["finetune_config"]["anchor_weight"] == 2.0
    assert card.training["finetune_config"]["refit_knobs"] is False
    assert (tmp_path / "run" / "latest.state.safetensors").is_file()


def test_finetune_from_project(tmp_path, capsys, parent, pair):
    image, annotation = pair
    project = Project(tmp_path / "p.zarr")
    key = project.add_image(image, name="nuclei")
    project.save_annotations(key, annotation)
    rc, out, err = run(
        capsys, "train", "--from", parent, "--project", tmp_path / "p.zarr", "--name", "mine",
        "--models-dir", tmp_path / "models", "--output", tmp_path / "run", *FAST,
    )  # fmt: skip
    assert rc == 0, err
    assert read_card(tmp_path / "models" / "mine.json").training["annotations"][0]["image"] == (
        "nuclei"
    )


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--images", "IMG"), "pair up"),
        (("--annotations", "IMG", "--images", "missing.tif"), "not found"),
        ((), "needs --images"),
    ],
)
def test_finetune_bad_input_is_one_line(tmp_path, capsys, parent, pair, extra, message):
    extra = [tmp_path / "img.tif" if e == "IMG" else e for e in extra]
    rc, _, err = run(capsys, "train", "--from", parent, *extra, *FAST)
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "option, value, words",
    [
        ("--replay", "2", "outside its range"),
        ("--held-out", "-0.5", "outside its range"),
        ("--iterations", "0", "iterations = 0 is outside its range"),  # was: the default
        ("--anchor-weight", "nan", "anchor_weight = nan is not a number"),
        ("--tune", "decoder", "tune = 'decoder' is not one of all, encoder, first_block"),
    ],
)
def test_values_outside_their_range_are_refused_before_any_work(
    tmp_path, capsys, parent, pair, option, value, words
):
    rc, _, err = run(
        capsys, "train", "--from", parent, "--images", tmp_path / "img.tif",
        "--annotations", tmp_path / "ann.tif", "--output", tmp_path / "run", *FAST,
        option, value,
    )  # fmt: skip
    assert rc == 2 and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_empty_annotation_is_refused(tmp_path, capsys, parent, pair):
    tifffile.imwrite(tmp_path / "empty.tif", np.zeros((64, 64), np.uint32))
    rc, _, err = run(
        capsys, "train", "--from", parent, "--images", tmp_path / "img.tif",
        "--annotations", tmp_path / "empty.tif", *FAST,
    )  # fmt: skip
    assert rc == 2 and "no objects" in err


def test_training_from_scratch_still_needs_its_arguments(capsys):
    rc, _, err = run(capsys, "train", "--method", "spoco")
    assert rc == 2 and "--data" in err


def test_finetune_with_context_compares_and_warns(tmp_path, capsys, parent, pair):
    """--context images are adapted to (--adapt-norm) and compared on; an extreme learning
    rate on the tiny model changes the objects a lot, and the CLI says so on stderr."""
    from napari_instseg.core.finetune import comparison_warnings, describe_comparison

    image, _ = load_sample("nuclei2d_dsb_stardist")  # two more crops of the same screen
    tifffile.imwrite(tmp_path / "ctx1.tif", image[64:128, :64])
    tifffile.imwrite(tmp_path / "ctx2.tif", image[:64, 64:128])
    rc, out, err = run(
        capsys, "train", "--from", parent, "--images", tmp_path / "img.tif",
        "--annotations", tmp_path / "ann.tif", "--context", tmp_path / "ctx1.tif",
        tmp_path / "ctx2.tif", "--adapt-norm", "--lr", "0.05", "--models-dir",
        tmp_path / "models", "--output", tmp_path / "run", *FAST,
    )  # fmt: skip
    assert rc == 0, err
    card = read_card(tmp_path / "models" / "spoco-tiny-finetuned.json")
    assert card.training["finetune_config"]["adapt_norm"] is True
    comparison = card.metrics["parent_comparison"]
    assert [c["image"] for c in comparison["images"]] == ["img", "ctx1", "ctx2"]
    line = describe_comparison(comparison, per_image=True)
    assert f"compared with spoco-tiny, {line}" in out and "(3 images): objects" in line
    warnings = comparison_warnings(comparison)
    assert warnings, comparison  # the broken fine-tune is noticed ...
    for warning in warnings:
        assert f"warning: {warning}" in err  # ... and said


def test_missing_context_image_is_one_line(tmp_path, capsys, parent, pair):
    rc, _, err = run(
        capsys, "train", "--from", parent, "--images", tmp_path / "img.tif",
        "--annotations", tmp_path / "ann.tif", "--context", tmp_path / "nope.tif", *FAST,
    )  # fmt: skip
    assert rc == 2 and "not found" in err and len(err.strip().splitlines()) == 1


def test_models_dir_holds_the_checkpoints_too(tmp_path, capsys, parent, pair):
    """With --models-dir and no --output nothing goes to the user's model folder: the run's
    checkpoints go to MODELS_DIR/runs/NAME, the model to MODELS_DIR; a second run there is
    named so that it does not clash with the first."""
    from napari_instseg.core.zoo import user_model_dir

    models = tmp_path / "models"
    common = (
        "train", "--from", parent, "--images", tmp_path / "img.tif",
        "--annotations", tmp_path / "ann.tif", "--models-dir", models, *FAST,
    )  # fmt: skip
    rc, out, err = run(capsys, *common)
    assert rc == 0, err
    assert (models / "spoco-tiny-finetuned.json").is_file()
    assert (models / "runs" / "spoco-tiny-finetuned" / "latest.state.safetensors").is_file()
    assert not any(user_model_dir().rglob("*")), list(user_model_dir().rglob("*"))
    rc, out, err = run(capsys, *common)
    assert rc == 0, err
    assert (models / "spoco-tiny-finetuned-2.json").is_file(), sorted(models.iterdir())
