"""Staging folders left by killed writers: removed at the start of the next write to the same
place when their owner is gone, never while it runs; a previous result that a killed write had
set aside is put back, not removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import tifffile
from _faults import one_line, run, snapshot

from napari_instseg.core.io.staging import clean_stale_staging, this_host


@pytest.fixture
def labels(tmp_path):
    path = tmp_path / "labels.tif"
    data = np.zeros((32, 32), np.uint32)
    data[4:10, 4:10], data[20:28, 12:20] = 1, 2
    tifffile.imwrite(path, data)
    return path


@pytest.fixture
def dead_pid():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.fixture
def live_pid():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield child.pid
    child.kill()
    child.wait()


def staging(folder, target, tag, owner):
    path = folder / f".{target}.{tag}-{owner}-0123abcd"
    path.mkdir(parents=True)
    (path / "zarr.json").write_text("{}")  # a half-written store
    return path


def test_export_removes_a_dead_writers_staging_and_keeps_live_ones(
    labels, tmp_path, capsys, dead_pid, live_pid
):
    out = tmp_path / "out"
    host = this_host()
    dead = staging(out, "cells.zarr", "partial", f"{host}-{dead_pid}")
    live = staging(out, "cells.zarr", "partial", f"{host}-{live_pid}")
    mine = staging(out, "cells.zarr", "partial", f"{host}-{os.getpid()}")
    elsewhere = staging(out, "cells.zarr", "partial", f"otherhost-{dead_pid}")
    other = staging(out, "other.zarr", "partial", f"{host}-{dead_pid}")  # another target's
    rc, _, err = run(capsys, "export", labels, "--output", out / "cells.zarr")
    assert rc == 0, err
    assert not dead.exists()
    for kept in (live, mine, elsewhere, other):
        assert snapshot(kept) == {"zarr.json": b"{}"}
    assert (out / "cells.zarr" / "zarr.json").is_file()


def test_older_unnamed_host_staging_goes_only_once_old(labels, tmp_path, dead_pid):
    out = tmp_path / "out"
    old = staging(out, "cells.tif", "partial", str(dead_pid))
    recent = staging(out, "cells.tif", "partial", str(dead_pid + 1_000_000))
    hour_ago = time.time() - 2 * 3600
    os.utime(old, (hour_ago, hour_ago))
    removed = clean_stale_staging(out / "cells.tif")
    assert removed == [old] and recent.exists()


def test_a_result_set_aside_by_a_killed_write_is_put_back(labels, tmp_path, capsys, dead_pid):
    out = tmp_path / "out"
    out.mkdir()
    aside = out / f".cells.tif.old-{this_host()}-{dead_pid}-0123abcd"
    aside.write_bytes(b"the user's earlier result")
    half = out / f".cells.tif.partial-{this_host()}-{dead_pid}-0123abcd"
    half.write_bytes(b"half")
    rc, _, err = run(capsys, "export", labels, "--output", out / "cells.tif")
    assert rc == 2  # the earlier result is back, so it is not replaced without --overwrite
    warning, _, err = err.partition("\n")
    assert warning.startswith("napari-instseg: warning: restored") and str(aside.name) in warning
    assert "cells.tif already exists" in one_line(err, "export")
    assert snapshot(out) == {"cells.tif": b"the user's earlier result"}


def test_a_write_in_progress_is_never_disturbed(labels, tmp_path, live_pid):
    out = tmp_path / "out"
    aside = out / f".cells.tif.old-{this_host()}-{live_pid}-0123abcd"
    out.mkdir()
    aside.write_bytes(b"being replaced right now")
    assert clean_stale_staging(out / "cells.tif") == []
    assert aside.read_bytes() == b"being replaced right now" and not (out / "cells.tif").exists()
