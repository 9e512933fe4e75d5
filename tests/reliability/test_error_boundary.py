"""The CLI's error boundary: user and environment errors (our own InputError family, CliError,
OSError) are one line and exit 2; anything else, a ValueError from our code included, is an
internal error (exit 1) that says so and points to --debug; --debug or NAPARI_INSTSEG_DEBUG=1
adds the traceback."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import tifffile
from _faults import MODEL, one_line, run

from napari_instseg.cli import CliError
from napari_instseg.core.arrays import InputError
from napari_instseg.core.checkpoint import CheckpointError
from napari_instseg.core.samples import SampleNotFoundError


def fail_with(monkeypatch, error: BaseException):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr("napari_instseg.core.zoo.list_models", broken)


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/data/models"), "/data/models:"),
        (OSError(errno.EROFS, "Read-only file system", "/mnt/ro"), "choose another folder"),
        (OSError(errno.ENOSPC, "No space left on device"), "free some space"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.tif"), "x.tif"),
    ],
    ids=["permission", "read-only", "disk-full", "not-found"],
)
def test_environment_errors_are_one_line(monkeypatch, capsys, error, words):
    fail_with(monkeypatch, error)
    rc, _, err = run(capsys, "models")
    assert rc == 2
    line = one_line(err, "models")
    assert words in line and error.strerror in line


def test_an_internal_error_says_so_and_points_to_debug(monkeypatch, capsys):
    fail_with(monkeypatch, KeyError("format"))
    rc, _, err = run(capsys, "models")
    assert rc == 1
    line = one_line(err, "models")
    assert "internal error (KeyError: 'format')" in line and "--debug" in line


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_shows_the_traceback(monkeypatch, capsys, where):
    fail_with(monkeypatch, KeyError("format"))
    args = {"before": ["--debug", "models"], "after": ["models", "--debug"], "env": ["models"]}
    if where == "env":
        monkeypatch.setenv("NAPARI_INSTSEG_DEBUG", "1")
    rc, _, err = run(capsys, *args[where])
    assert rc == 1
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    assert err.strip().splitlines()[-1].startswith("napari-instseg models: error: internal error")


def test_debug_shows_the_traceback_of_a_user_error_too(tmp_path, capsys):
    rc, _, err = run(capsys, "--debug", "evaluate", tmp_path / "nowhere", tmp_path)
    assert rc == 2
    assert "Traceback" in err and "CliError" in err
    assert err.strip().splitlines()[-1] == (
        f"napari-instseg evaluate: error: not a folder: {tmp_path / 'nowhere'}"
    )


def test_a_multi_line_message_stays_one_line(monkeypatch, capsys):
    fail_with(monkeypatch, InputError("first part\n  second part"))
    rc, _, err = run(capsys, "models")
    assert rc == 2
    assert one_line(err, "models").endswith("error: first part second part")


@pytest.mark.parametrize(
    "error",
    [ValueError("could not broadcast"), TypeError("unhashable type"), IndexError("out of range")],
    ids=lambda e: type(e).__name__,
)
def test_a_value_error_from_our_code_is_internal_not_the_users_fault(monkeypatch, capsys, error):
    """A plain ValueError is a bug of ours (the user-error types are ours: InputError and its
    family, CliError, OSError): it must not read like bad input."""
    fail_with(monkeypatch, error)
    rc, _, err = run(capsys, "models")
    assert rc == 1
    line = one_line(err, "models")
    assert f"internal error ({type(error).__name__}: {error})" in line
    assert "--debug" in line and "NAPARI_INSTSEG_DEBUG=1" in line


def test_an_internal_error_deep_in_segment_is_internal(
    models_env, image, tmp_path, capsys, monkeypatch
):
    """The same for a ValueError raised inside the segmentation, after the inputs were
    accepted: exit 1, the internal-error line, no output under the final name."""

    def broken(*args, **kwargs):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr("napari_instseg.core.planes.segment_planes", broken)
    out = tmp_path / "out"
    rc, _, err = run(capsys, "segment", image, "--model", MODEL, "--output", out)
    assert rc == 1
    assert "internal error (ValueError: operands could not" in one_line(err, "segment")
    assert not list(out.glob("*.tif"))


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InputError("bad input"), 2),
        (CheckpointError("bad card"), 2),
        (CliError("bad option"), 2),
        (SampleNotFoundError("sample missing"), 2),
        (ConnectionError("block (0, 1) was cancelled by the cluster; run again"), 2),
        (ValueError("a bug"), 1),
        (RuntimeError("a bug"), 1),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else None,
)
def test_the_boundary_classifies_by_our_own_types(monkeypatch, capsys, error, code):
    fail_with(monkeypatch, error)
    rc, _, err = run(capsys, "models")
    assert rc == code
    line = one_line(err, "models")
    assert line.endswith(f"error: {error}") == (code == 2)


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--set", "fg_threshold=2.0"], "fg_threshold = 2.0 is outside its range"),
        (["--set", "nonsense=1"], "unknown option(s) ['nonsense']"),
        (["--set", "fg_threshold"], "expected KNOB=VALUE"),
        (["--set", "min_size=abc"], "min_size: expected int"),
        (["--backend", "nope"], "unknown back-end 'nope'"),
        (["--backend", "meanshift"], "does not fit method 'threeclass'"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--channel-axis", "5"], "channel axis 5 is outside"),
        (["--appearance", "stain"], "needs"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_user_input_is_still_one_line_exit_2(
    models_env, image, tmp_path, capsys, options, words
):
    out = tmp_path / "out"
    rc, _, err = run(capsys, "segment", image, "--model", MODEL, "--output", out, *options)
    assert rc == 2
    line = one_line(err, "segment")
    assert words in line and "internal error" not in line


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--method", "nope"], "unknown method 'nope'"),
        (["--method", "patchperpix", "--set", "patch_size=4"], "patch_size must be odd"),
        (["--method", "allcell", "--set", "depth=2"], "allcell needs depth >= 4"),
        (["--method", "threeclass", "--sparse", "0"], "must be in (0, 1]"),
        (["--method", "threeclass", "--augment", "zoom=abc"], "expected"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_bad_training_input_is_one_line_exit_2(tmp_path, capsys, options, words):
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    mask = np.zeros((64, 64), np.uint16)
    mask[8:20, 8:20], mask[30:44, 30:40] = 1, 2
    rows = ["name,split"]
    for name, split in (("a", "train"), ("b", "val")):
        tifffile.imwrite(data / "images" / f"{name}.tif", np.random.default_rng(0).random((64, 64)))
        tifffile.imwrite(data / "masks" / f"{name}.tif", mask)
        rows.append(f"{name},{split}")
    (data / "metadata.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    rc, _, err = run(
        capsys, "train", *options, "--data", data, "--output", out, "--iterations", "1",
        "--batch-size", "1", "--patch-size", "32",
    )  # fmt: skip
    assert rc == 2
    assert words in one_line(err, "train")
    assert not out.exists()
