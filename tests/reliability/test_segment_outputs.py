"""`segment` (the in-memory path): outputs staged and renamed into place, never replaced
without --overwrite, never written twice by two inputs of the same name."""

from __future__ import annotations

import errno
import json
import os

import numpy as np
import pytest
import tifffile
from _faults import MODEL, one_line, run, snapshot


def segment(capsys, *args):
    return run(capsys, "segment", *args, "--model", MODEL, "--device", "cpu")


def test_outputs_are_complete_and_carry_how_they_were_made(models_env, image, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = segment(capsys, image, "--output", out)
    assert rc == 0, err
    assert sorted(snapshot(out)) == ["cells.json", "cells.tif"]  # no staged leftovers
    how = json.loads((out / "cells.json").read_text())
    assert how["model"] == MODEL and how["image"] == str(image)
    from napari_instseg.core.io import read_labels

    labels, attrs = read_labels(out / "cells.tif")  # export reads the TIFF's own record
    assert labels.dtype == np.uint32 and labels.shape == (64, 64)
    assert attrs["model"] == MODEL and attrs["knobs"] == how["knobs"]


def test_an_existing_result_is_refused_and_kept(models_env, image, tmp_path, capsys):
    out = tmp_path / "out"
    assert segment(capsys, image, "--output", out)[0] == 0
    before = snapshot(out)
    rc, _, err = segment(capsys, image, "--output", out)
    assert rc == 2
    line = one_line(err, "segment")
    assert str(out / "cells.tif") in line and "--overwrite" in line
    assert snapshot(out) == before


def test_an_existing_json_alone_is_refused_too(models_env, image, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells.json").write_text('{"mine": true}')
    rc, _, err = segment(capsys, image, "--output", out)
    assert rc == 2
    assert "cells.json already exists" in one_line(err, "segment")
    assert snapshot(out) == {"cells.json": b'{"mine": true}'}


def test_overwrite_replaces(models_env, image, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cells.tif").write_bytes(b"an older result")
    rc, _, err = segment(capsys, image, "--output", out, "--overwrite")
    assert rc == 0, err
    assert sorted(snapshot(out)) == ["cells.json", "cells.tif"]
    assert tifffile.imread(out / "cells.tif").shape == (64, 64)


def test_same_name_in_two_folders_is_refused_before_any_work(
    models_env, nuclei_crop, tmp_path, capsys
):
    a, b = tmp_path / "a" / "cells.tif", tmp_path / "b" / "cells.tif"
    for path in (a, b):
        path.parent.mkdir()
        tifffile.imwrite(path, nuclei_crop)
    out = tmp_path / "out"
    rc, _, err = segment(capsys, a, b, "--output", out)
    assert rc == 2
    line = one_line(err, "segment")
    assert str(a) in line and str(b) in line and str(out / "cells.tif") in line
    assert not out.exists()


def test_tif_and_zarr_of_one_name_are_refused(models_env, nuclei_crop, tmp_path, capsys):
    import zarr

    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "cells.tif", nuclei_crop)
    zarr.create_array(str(folder / "cells.zarr"), shape=nuclei_crop.shape, dtype="uint8")
    rc, _, err = segment(capsys, folder, "--output", tmp_path / "out")
    assert rc == 2
    assert "cells.zarr" in one_line(err, "segment")
    assert not (tmp_path / "out").exists()


def test_an_ome_zarr_input_is_named_by_its_stem(models_env, nuclei_crop, tmp_path, capsys):
    from napari_instseg.core.io.ome_zarr import write_ome_zarr

    source = tmp_path / "cells.ome.zarr"
    write_ome_zarr(source, nuclei_crop, np.zeros((64, 64), np.uint32), image_name="cells")
    out = tmp_path / "out"
    rc, _, err = segment(capsys, source, "--output", out)
    assert rc == 0, err
    assert sorted(snapshot(out)) == ["cells.json", "cells.tif"]


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "free some space"),
        (errno.EROFS, "read-only"),
        (errno.EACCES, "can write to"),
    ],
    ids=["disk-full", "read-only", "no-permission"],
)
def test_a_failed_write_leaves_the_earlier_result(
    models_env, image, tmp_path, capsys, monkeypatch, code, words
):
    out = tmp_path / "out"
    assert segment(capsys, image, "--output", out)[0] == 0
    before = snapshot(out)

    def write_half_then_fail(path, data, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\x00 half a TIFF")
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(tifffile, "imwrite", write_half_then_fail)
    rc, _, err = segment(capsys, image, "--output", out, "--overwrite")
    assert rc == 2
    line = one_line(err, "segment")
    assert words in line and f"{out / 'cells.tif'}:" in line  # the file asked for, not .partial
    assert snapshot(out) == before  # the earlier result, no staged file left


def test_a_failed_json_write_leaves_no_empty_file(models_env, image, tmp_path, capsys, monkeypatch):
    from pathlib import Path

    def disk_full(self, *args, **kwargs):
        open(self, "w").close()  # what a full disk leaves: an empty file
        raise OSError(errno.ENOSPC, "No space left on device", str(self))

    monkeypatch.setattr(Path, "write_text", disk_full)
    out = tmp_path / "out"
    rc, _, err = segment(capsys, image, "--output", out)
    assert rc == 2
    assert "No space left on device" in one_line(err, "segment")
    # The labels are complete (and hold the same record); no empty or staged JSON remains.
    assert sorted(snapshot(out)) == ["cells.tif"]


def test_output_that_is_a_file_is_refused(models_env, image, tmp_path, capsys):
    existing = tmp_path / "results"
    existing.write_text("not a folder")
    rc, _, err = segment(capsys, image, "--output", existing)
    assert rc == 2
    assert "is a file" in one_line(err, "segment")
    assert existing.read_text() == "not a folder"


def test_output_below_a_file_is_one_line(models_env, image, tmp_path, capsys):
    existing = tmp_path / "results"
    existing.write_text("not a folder")
    rc, _, err = segment(capsys, image, "--output", existing / "labels")
    assert rc == 2
    assert "is a file, not a folder" in one_line(err, "segment")


def test_a_full_disk_that_names_no_file_names_the_output(
    models_env, image, tmp_path, capsys, monkeypatch
):
    """A write that fails on a full disk raises ENOSPC with no file name: the line still
    names the file asked for (reproduced on a real full tmpfs)."""

    def disk_full(path, data, **kwargs):
        with open(path, "wb") as f:
            f.write(b"II*\x00 half a TIFF")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tifffile, "imwrite", disk_full)
    out = tmp_path / "out"
    rc, _, err = segment(capsys, image, "--output", out)
    assert rc == 2
    assert f"{out / 'cells.tif'}: No space left on device" in one_line(err, "segment")
    assert snapshot(out) == {}  # no half-written or staged file
