"""Out-of-range numbers on the command line are refused before any work: one line, exit 2, no
output folder, the network never run. Knob and tiling values go through the configs' declared
ranges (``core.configs.check_ranges``)."""

from __future__ import annotations

import pytest
from _faults import MODEL, one_line, run

from napari_instseg.cli import main


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if anything is segmented."""

    def refuse(*args, **kwargs):
        raise AssertionError("segment_image ran: the value should have been refused before")

    monkeypatch.setattr("napari_instseg.core.pipeline.segment_image", refuse)
    monkeypatch.setattr("napari_instseg.core.large.engine.segment_large", refuse)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--tile-size", "0"], "tile_size = 0 is outside its range"),
        (["--tile-size", "-64"], "tile_size = -64 is outside its range"),
        (["--tile-size", "100000"], "tile_size = 100000 is outside its range"),
        (["--halo", "-1"], "halo = -1 is outside its range"),
        (["--halo", "-1", "--large"], "halo = -1 is outside its range"),
        (["--set", "min_size=-1"], "min_size = -1 is outside its range"),
        (["--set", "fg_threshold=2.0"], "fg_threshold = 2.0 is outside its range"),
        (["--set", "fg_threshold=nan"], "fg_threshold = nan is not a number"),
        (["--diameter", "-3"], "diameter must be a positive number"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_segment_refuses_before_any_work(
    models_env, image, tmp_path, capsys, no_work, options, words
):
    out = tmp_path / "out"
    rc, _, err = run(capsys, "segment", image, "--model", MODEL, "--output", out, *options)
    assert rc == 2
    assert words in one_line(err, "segment")
    assert not out.exists()


@pytest.mark.parametrize("bandwidth", ["0", "-0.5"])
def test_meanshift_bandwidth_must_be_positive(
    tmp_path, monkeypatch, capsys, save_tiny_spoco, image, no_work, bandwidth
):
    save_tiny_spoco(tmp_path / "models")
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", str(tmp_path / "models"))
    out = tmp_path / "out"
    rc, _, err = run(
        capsys, "segment", image, "--model", "spoco-tiny", "--output", out,
        "--set", f"bandwidth={bandwidth}",
    )  # fmt: skip
    assert rc == 2
    assert f"bandwidth = {float(bandwidth)} is outside its range" in one_line(err, "segment")
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--workers", "0"], "argument --workers: must be at least 1, not 0"),
        (["--block", "0"], "argument --block: must be at least 1, not 0"),
        (["--block", "64,-1,64"], "argument --block: must be at least 1"),
        (["--block", "big"], "argument --block: expected a whole number or one per axis"),
        (["--block-halo", "-8", "--large"], "argument --block-halo: must be at least 0"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_blockwise_sizes_are_refused_while_parsing(
    models_env, image, tmp_path, capsys, options, words
):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        main(["segment", str(image), "--model", MODEL, "--output", str(out), *options])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"napari-instseg segment: error: {words}" in err
    assert not out.exists()


def test_export_levels_must_be_positive(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["export", "labels.tif", "-o", str(tmp_path / "x.ome.zarr"), "--levels", "0"])
    assert stop.value.code == 2
    assert "argument --levels: must be at least 1, not 0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--iterations", "0"], "iterations = 0 is outside its range"),
        (["--batch-size", "-2"], "batch_size = -2 is outside its range"),
        (["--patch-size", "4"], "patch_size = 4 is outside its range"),
        (["--lr", "-1"], "lr = -1.0 is outside its range"),
        (["--lr", "nan"], "lr = nan is not a number"),
        (["--val-every", "0"], "val_every = 0 is outside its range"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_train_refuses_before_reading_any_data(tmp_path, monkeypatch, capsys, options, words):
    """A 0 used to become the default silently; now it is refused before the data is read."""

    def refuse(*args, **kwargs):
        raise AssertionError("the data was read: the value should have been refused before")

    monkeypatch.setattr("napari_instseg.core.data.training_set.load_folder", refuse)
    out = tmp_path / "run"
    rc, _, err = run(
        capsys, "train", "--method", "embedseg", "--data", tmp_path / "nowhere",
        "--output", out, *options,
    )  # fmt: skip
    assert rc == 2
    assert words in one_line(err, "train")
    assert not out.exists()


@pytest.mark.parametrize("value", ["2.0", "nan"])
def test_a_saved_model_refuses_out_of_range_knobs(models_env, tmp_path, capsys, value):
    """`export --output-model` checks the knobs it would save as the model's defaults."""
    out = tmp_path / "model"
    rc, _, err = run(
        capsys, "export", "--model", MODEL, "--set", f"fg_threshold={value}",
        "--output-model", out,
    )  # fmt: skip
    assert rc == 2
    assert f"fg_threshold = {float(value)}" in one_line(err, "export")
    assert not out.exists()
