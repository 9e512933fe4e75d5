"""``napari-instseg export``, run in-process (no Qt): every format from one labels file, the
labels' own metadata carried into the outputs, tuned model copies, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_instseg.cli import main
from napari_instseg.core.checkpoint import read_card
from napari_instseg.core.io import read_labels
from napari_instseg.core.io.ome_zarr import read_ome_zarr
from napari_instseg.core.io.tiff import write_labels_tiff
from napari_instseg.core.samples import load_sample

MODEL = "tiny-cli-export"
N_OBJECTS = 125  # the bundled DSB nuclei sample


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("napari-instseg export: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """One tiny untrained threeclass model whose card has its own knob defaults."""
    import torch

    from napari_instseg.core.checkpoint import ModelCard, save_model
    from napari_instseg.core.configs import config_to_dict
    from napari_instseg.core.methods import get_method

    method = get_method("threeclass")
    cfg = method.config_type(width=4, depth=2)
    torch.manual_seed(0)
    card = ModelCard(
        MODEL,
        method.name,
        config_to_dict(cfg),
        "watershed",
        backend_config={"min_size": 20},
    )
    directory = tmp_path_factory.mktemp("models")
    save_model(directory, MODEL, method.build_net(cfg), card)
    return directory


@pytest.fixture
def models_env(model_dir, monkeypatch) -> Path:
    monkeypatch.setenv("NAPARI_INSTSEG_MODEL_DIRS", str(model_dir))
    return model_dir


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """The nuclei sample as a plain image tif and a plain labels tif (no metadata)."""
    image, truth = load_sample("nuclei2d_dsb_stardist")
    folder = tmp_path_factory.mktemp("inputs")
    tifffile.imwrite(folder / "nuclei.tif", image)
    tifffile.imwrite(folder / "nuclei_labels.tif", truth.astype(np.uint16))
    return {
        "image": folder / "nuclei.tif",
        "labels": folder / "nuclei_labels.tif",
        "image_data": image,
        "truth": truth.astype(np.uint32),
    }


def test_export_writes_every_format_from_one_labels_file(files, tmp_path, capsys):
    outs = [tmp_path / n for n in ("a.tif", "a.zarr", "a.ome.zarr", "a.csv")]
    args = ["export", files["labels"], "--image", files["image"]]
    for out in outs:
        args += ["-o", out]
    rc, out, err = run(capsys, *args)
    assert rc == 0, err
    assert len(out.splitlines()) == 4 and all(
        f"{N_OBJECTS} objects" in line for line in out.splitlines()
    )

    truth = files["truth"]
    for path in outs[:2]:
        labels, _ = read_labels(path)
        assert labels.dtype == np.uint32 and np.array_equal(labels, truth)
    image, labels, meta = read_ome_zarr(outs[2])
    assert np.array_equal(image, files["image_data"]) and meta["name"] == "nuclei"
    assert np.array_equal(labels["labels"], truth)
    df = pd.read_csv(outs[3])
    areas = np.bincount(truth.ravel())
    assert df["id"].tolist() == list(range(1, N_OBJECTS + 1))
    assert df["area"].tolist() == areas[1:].tolist()
    assert "mean_intensity" in df.columns and df["model"].isna().all()


def test_export_carries_the_labels_metadata_and_saves_the_tuned_model(
    files, models_env, tmp_path, capsys
):
    knobs = {"seed_threshold": 0.8, "fg_threshold": 0.4, "min_seed_size": 4, "min_size": 20}
    labels = tmp_path / "pred.tif"
    write_labels_tiff(
        labels,
        files["truth"],
        attrs={"model": MODEL, "method": "threeclass", "backend": "watershed", "knobs": knobs},
    )
    rc, out, err = run(
        capsys,
        "export",
        labels,
        "-o",
        tmp_path / "t.csv",
        "--set",
        "min_size=7",
        "--output-model",
        tmp_path / "models",
    )
    assert rc == 0, err
    df = pd.read_csv(tmp_path / "t.csv")
    assert len(df) == N_OBJECTS and (df["model"] == MODEL).all()
    used = json.loads(df["knobs"][0])
    assert used == {**knobs, "min_size": 7}  # the labels' knobs, then --set

    card = read_card(tmp_path / "models" / f"{MODEL}-tuned.json")
    assert card.parent == MODEL and card.backend == "watershed"
    assert card.backend_config == used
    assert (tmp_path / "models" / f"{MODEL}-tuned.safetensors").exists()
    assert f"{MODEL}-tuned" in out


def test_export_model_only_with_another_backend(models_env, tmp_path, capsys):
    rc, out, err = run(
        capsys,
        "export",
        "--model",
        MODEL,
        "--backend",
        "components",
        "--set",
        "grow=3",
        "--output-model",
        tmp_path,
        "--model-name",
        "mine",
    )
    assert rc == 0, err
    card = read_card(tmp_path / "mine.json")
    assert card.backend == "components" and card.parent == MODEL
    # the card's min_size default belongs to its own back-end (watershed), not components
    assert card.backend_config == {"threshold": 0.5, "grow": 3, "min_size": 15}


def test_existing_output_needs_overwrite(files, tmp_path, capsys):
    target = tmp_path / "a.tif"
    target.write_bytes(b"old")
    rc, _, err = run(capsys, "export", files["labels"], "-o", target)
    assert rc == 2 and "already exists" in one_line_error(err)
    assert target.read_bytes() == b"old"
    rc, _, err = run(capsys, "export", files["labels"], "-o", target, "--overwrite")
    assert rc == 0, err
    assert np.array_equal(tifffile.imread(target), files["truth"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "nothing to export"),
        (["-o", "{tmp}/a.png"], "cannot tell the export format"),
        (["-o", "{tmp}/a.ome.zarr"], "needs the image"),
        (["-o", "{tmp}/a.csv", "--set", "min_size=3"], "need --model"),
        (["--model", "no-such-model", "--output-model", "{tmp}/m"], "no model called"),
        (["--model", MODEL, "--set", "nope=1", "--output-model", "{tmp}/m"], "unknown option"),
        (["-o", "{tmp}/a.ome.zarr", "--image", "{small}"], "spatial shape"),
    ],
)
def test_errors_are_one_line_and_write_nothing(files, models_env, tmp_path, capsys, extra, message):
    small = tmp_path / "small.tif"
    tifffile.imwrite(small, np.zeros((32, 32), np.uint8))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    args = [a.format(tmp=out_dir, small=small) for a in extra]
    rc, out, err = run(capsys, "export", files["labels"], *args)
    assert rc == 2 and out == ""
    assert message in one_line_error(err)
    assert list(out_dir.iterdir()) == []


def test_missing_labels_file_is_a_one_line_error(tmp_path, capsys):
    rc, _, err = run(capsys, "export", tmp_path / "nope.tif", "-o", tmp_path / "a.csv")
    assert rc == 2 and "no such file" in one_line_error(err)


def test_export_finds_the_model_of_a_segment_output(files, models_env, tmp_path, capsys):
    """``segment`` writes how its labels were made into the TIFF; ``export --output-model``
    reads the model, back-end and knobs back from it, with no --model."""
    out = tmp_path / "seg"
    rc, _, err = run(
        capsys, "segment", files["image"], "--model", MODEL, "--output", out,
        "--set", "min_size=9", "--diameter", "off", "--appearance", "as-is",
    )  # fmt: skip
    assert rc == 0, err
    (labels_path,) = out.glob("*.tif")
    _, attrs = read_labels(labels_path)
    assert (attrs["model"], attrs["backend"]) == (MODEL, "watershed")
    rc, text, err = run(capsys, "export", labels_path, "--output-model", tmp_path / "models")
    assert rc == 0, err
    card = read_card(tmp_path / "models" / f"{MODEL}-tuned.json")
    assert card.parent == MODEL and card.backend == "watershed"
    assert card.backend_config["min_size"] == 9 == attrs["knobs"]["min_size"]
