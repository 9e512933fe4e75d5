"""Blockwise segmentation (`segment --large`) under faults: a stopped or killed run leaves
nothing finished-looking under the final name, two runs on one output are kept apart by a
lock (a dead run's lock is taken over), and an earlier run's blocks are checked against the
block store before they are reused (a missing, changed or unreadable block, or a corrupt
marker, is segmented again)."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from dataclasses import dataclass

import cloudpickle
import numpy as np
import pytest
import tifffile
import zarr
from _faults import MODEL, one_line, run, snapshot
from scipy import ndimage as ndi

from _blobs import blobs, same_partition
from napari_instseg.core.arrays import InputError
from napari_instseg.core.io.staging import OutputLock
from napari_instseg.core.jobs import Progress, Stop
from napari_instseg.core.jobs import run as run_job
from napari_instseg.core.large.engine import segment_large

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Threshold:
    """A local segmenter: smooth, threshold, connected components (optionally slow). A
    dataclass, so a run with an equal one resumes."""

    delay: float = 0.0

    def __call__(self, image, origin=()):
        import time

        time.sleep(self.delay)
        return ndi.label(ndi.uniform_filter(image[0], 3) > 0.5)[0]


@pytest.fixture(scope="module")
def cluster():
    """One in-process worker: the engine's tasks without starting processes."""
    from distributed import Client, LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    ) as local:
        with Client(local) as client:
            yield client


@pytest.fixture
def source(tmp_path):
    image = blobs((300, 300), 80)
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, image)
    return path, image


def segment(src, out, client, **kw):
    kw.setdefault("segmenter", Threshold())
    return segment_large(src, out, core=100, halo=20, client=client, **kw)


def stop_after(job, blocks: int):
    """Drive ``job`` and send Stop once ``blocks`` blocks are segmented."""
    event = next(job)
    try:
        while True:
            stop = isinstance(event, Progress) and event.stage == "segment"
            event = job.send(Stop() if stop and event.step >= blocks else None)
    except StopIteration as end:
        return end.value


# -- nothing finished-looking under the final name -------------------------------------------
def test_a_stopped_run_leaves_no_output_under_the_final_name(cluster, source, tmp_path):
    src, image = source
    out = tmp_path / "out.ome.zarr"
    slow = Threshold(0.3)
    assert stop_after(segment(src, out, cluster, segmenter=slow), 2) is None
    assert not out.exists()  # nothing that export or evaluate could take for a result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", "out.ome.zarr.blocks"]
    res = run_job(segment(src, out, cluster, segmenter=slow))
    assert res.resumed_blocks >= 2
    from napari_instseg.core.io.ome_zarr import open_ome_zarr

    assert same_partition(open_ome_zarr(out).labels_level("labels", 0), Threshold()(image[None]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.tif", "out.ome.zarr"]


def test_export_of_a_stopped_run_is_refused_in_one_line(cluster, source, tmp_path, capsys):
    src, _ = source
    out = tmp_path / "out.zarr"
    stop_after(segment(src, out, cluster, segmenter=Threshold(0.3)), 1)
    rc, _, err = run(capsys, "export", out, "--output", tmp_path / "t.csv")
    assert rc == 2
    assert str(out) in one_line(err, "export")
    assert not (tmp_path / "t.csv").exists()


def test_labels_added_to_an_ome_zarr_appear_only_when_complete(cluster, tmp_path):
    from napari_instseg.core.io.ome_zarr import open_ome_zarr, write_ome_zarr

    image = blobs((300, 300), 60)
    path = tmp_path / "cells.ome.zarr"
    write_ome_zarr(path, image, {"truth": image.astype(np.uint32)}, image_name="cells", levels=2)
    before = snapshot(path)
    job = segment_large(path, path, segmenter=Threshold(0.3), core=100, halo=20, client=cluster)
    assert stop_after(job, 1) is None
    assert snapshot(path) == before  # the user's OME-Zarr untouched until the end
    assert set(open_ome_zarr(path).labels_levels) == {"truth"}
    run_job(segment_large(path, path, segmenter=Threshold(), core=100, halo=20, client=cluster))
    ome = open_ome_zarr(path)
    assert set(ome.labels_levels) == {"truth", "labels"}
    assert same_partition(ome.labels_level("labels", 0), Threshold()(image[None]))
    np.testing.assert_array_equal(ome.labels_level("truth", 0), image.astype(np.uint32))


# -- one run per output ----------------------------------------------------------------------
def test_a_second_run_on_the_same_output_is_refused(cluster, source, tmp_path, capsys):
    src, _ = source
    out = tmp_path / "out.zarr"
    stop_after(segment(src, out, cluster, segmenter=Threshold(0.3)), 1)
    work = tmp_path / "out.zarr.blocks"
    before = snapshot(work)
    with OutputLock(out):  # a run that still works on this output
        with pytest.raises(InputError, match="being written by another run") as refused:
            run_job(segment(src, out, cluster, resume=False))
    assert "process" in str(refused.value) and ".out.zarr.lock" in str(refused.value)
    assert snapshot(work) == before  # its blocks were neither shared nor deleted
    assert not out.exists()


def test_the_lock_of_a_killed_run_is_taken_over(cluster, source, tmp_path):
    src, image = source
    out = tmp_path / "out.zarr"
    code = textwrap.dedent(
        f"""
        import os, sys, time
        from napari_instseg.core.io.staging import OutputLock
        OutputLock({str(out)!r}).acquire()
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(InputError, match=f"process {holder.pid} on"):
            run_job(segment(src, out, cluster))
    finally:
        holder.kill()  # kill -9: the lock file stays behind
        holder.wait()
    assert (tmp_path / ".out.zarr.lock").exists()
    res = run_job(segment(src, out, cluster))
    assert same_partition(zarr.open_array(str(out))[...], Threshold()(image[None]))
    assert res.n_objects > 10
    assert not (tmp_path / ".out.zarr.lock").exists()


def test_a_lock_naming_a_dead_process_is_taken_over_without_flock(tmp_path, monkeypatch):
    """Where the file system has no flock, the pid in the lock file decides."""
    import json
    import os

    from napari_instseg.core.io import staging

    monkeypatch.setattr(staging.OutputLock, "_flock", lambda self, fd: None)
    out = tmp_path / "out.zarr"
    lock = tmp_path / ".out.zarr.lock"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock.write_text(json.dumps({"host": staging.this_host(), "pid": dead.pid, "started": 0}))
    with OutputLock(out):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    lock.write_text(json.dumps({"host": staging.this_host(), "pid": os.getppid(), "started": 0}))
    with pytest.raises(InputError, match=f"process {os.getppid()} on"):
        OutputLock(out).acquire()
    assert json.loads(lock.read_text())["pid"] == os.getppid()  # a live owner's lock kept


# -- an earlier run's blocks are verified, not trusted ---------------------------------------
@pytest.fixture
def finished_work(cluster, source, tmp_path):
    """A complete run whose block store and markers were kept: every block 'done'."""
    src, image = source
    out = tmp_path / "out.zarr"
    run_job(segment(src, out, cluster, keep_work=True))
    reference = zarr.open_array(str(out))[...]
    work = tmp_path / "out.zarr.blocks"
    assert len(list((work / "blocks").glob("*.npz"))) == 9
    return src, out, work, reference


def resume(src, out, cluster, caplog):
    with caplog.at_level(logging.WARNING, logger="napari_instseg"):
        res = run_job(segment(src, out, cluster, overwrite=True))
    return res, [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_block_whose_slot_is_gone_is_segmented_again(cluster, finished_work, caplog):
    src, out, work, reference = finished_work
    slots = sorted((work / "store.zarr" / "c").iterdir())
    assert len(slots) == 9
    import shutil

    shutil.rmtree(slots[4])  # block 4's shard deleted, its marker kept
    res, warned = resume(src, out, cluster, caplog)
    assert res.resumed_blocks == 8 and [b["index"] for b in res.blocks] == [4]
    expected = f"block 4 of {out} is segmented again: its slot in the block store is missing"
    assert any(w.startswith(expected) for w in warned), warned
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], reference)


def test_a_changed_or_unreadable_slot_is_segmented_again(cluster, finished_work, caplog):
    src, out, work, reference = finished_work
    store = zarr.open_array(str(work / "store.zarr"), mode="r+")
    store[2, 5:10, 5:10] = 99999  # a slot that no longer holds what its marker says
    shard = next((work / "store.zarr" / "c" / "7").rglob("*"))
    while shard.is_dir():
        shard = next(shard.iterdir())
    shard.write_bytes(b"\0garbage" * 10)  # and one that no codec can read
    res, warned = resume(src, out, cluster, caplog)
    assert sorted(b["index"] for b in res.blocks) == [2, 7]
    assert any(w.startswith("block 7 ") for w in warned), warned
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], reference)


def test_a_corrupt_marker_means_not_done_and_never_mentions_pickle(cluster, finished_work, caplog):
    src, out, work, reference = finished_work
    (work / "blocks" / "3.npz").write_bytes(b"not a marker at all")
    (work / "blocks" / "5.npz").write_bytes((work / "blocks" / "5.npz").read_bytes()[:40])
    res, warned = resume(src, out, cluster, caplog)
    assert sorted(b["index"] for b in res.blocks) == [3, 5]
    assert len(warned) == 2 and all("done-marker" in w for w in warned), warned
    assert not any("pickle" in w for w in warned)
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], reference)


def test_markers_of_an_older_run_without_checksums_are_not_trusted(cluster, finished_work, caplog):
    src, out, work, reference = finished_work
    marker = work / "blocks" / "0.npz"
    with np.load(marker) as data:
        old = {k: data[k] for k in data.files if k != "slot_digest"}
    np.savez(marker, **old)
    res, warned = resume(src, out, cluster, caplog)
    assert [b["index"] for b in res.blocks] == [0] and "no checksum" in warned[0]
    np.testing.assert_array_equal(zarr.open_array(str(out))[...], reference)


# -- NaN where the statistics sample did not look --------------------------------------------
def test_a_block_holding_nan_is_named_with_its_file_and_pixel(cluster, tmp_path):
    image = blobs((300, 300), 40)
    image[250, 270] = np.nan  # in block 8 only
    src = tmp_path / "nan.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "nan.zarr"
    with pytest.raises(InputError) as refused:  # the user's error, not an internal one
        run_job(segment(src, out, cluster))
    text = str(refused.value)
    assert str(src) in text and "NaN" in text and "(250, 270)" in text
    assert not out.exists()


def test_cli_nan_in_a_block_is_one_line_exit_2(models_env, cluster, tmp_path, capsys):
    image = blobs((2100, 2100), 1, seed=1)  # large enough that the sample is strided
    image[1001, 1] = np.nan  # an odd row: the every-other-pixel sample misses it
    src = tmp_path / "nan.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "out"
    args = ["--model", MODEL, "--scheduler", cluster.scheduler.address, "--output", out]
    rc, _, err = run(capsys, "segment", src, "--large", "--block", "1024", *args)
    assert rc == 2
    line = one_line(err, "segment")
    assert str(src) in line and "NaN" in line and "(1001, 1)" in line
    assert not list(out.glob("nan*.zarr"))


def test_cli_second_run_on_a_locked_output_is_one_line_exit_2(
    models_env, cluster, source, tmp_path, capsys
):
    src, _ = source
    out = tmp_path / "out"
    out.mkdir()
    (out / "img.ome.zarr.blocks").mkdir()
    (out / "img.ome.zarr.blocks" / "run.json").write_text("{}")  # the other run's work
    before = snapshot(out)
    args = ["--model", MODEL, "--scheduler", cluster.scheduler.address, "--output", out]
    with OutputLock(out / "img.ome.zarr"):
        rc, _, err = run(capsys, "segment", src, "--large", "--no-resume", *args)
    assert rc == 2
    line = one_line(err, "segment")
    assert "is being written by another run" in line and str(out / "img.ome.zarr") in line
    assert snapshot(out) == before
