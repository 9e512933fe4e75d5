"""The CLI's error boundary: user and environment errors are one line and exit 2, internal
errors say so (exit 1) and point to --debug; --debug or NAPARI_INSTSEG_DEBUG=1 adds the
traceback."""

from __future__ import annotations

import errno

import pytest
from _faults import one_line, run


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
    fail_with(monkeypatch, ValueError("first part\n  second part"))
    rc, _, err = run(capsys, "models")
    assert rc == 2
    assert one_line(err, "models").endswith("error: first part second part")
