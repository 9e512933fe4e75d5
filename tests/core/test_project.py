"""Project folders: annotations survive reopening, partial writes, foreign folders refused."""

from __future__ import annotations

import numpy as np
import pytest

from napari_instseg.core.arrays import InputError
from napari_instseg.core.project import Project, image_key, is_project


def test_annotations_and_predictions_survive_reopening(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((300, 200)).astype(np.float32)
    project = Project(tmp_path / "p.zarr")
    key = project.add_image(image, name="cells")
    annotation = np.zeros(image.shape, np.uint32)
    annotation[10:20, 10:20] = 3
    project.save_annotations(key, annotation)
    project.save_predictions(key, annotation * 2, metadata={"model": "m", "knobs": {"a": 1}})

    again = Project(tmp_path / "p.zarr")
    assert is_project(tmp_path / "p.zarr")
    [entry] = again.entries()
    assert (entry.key, entry.name, entry.shape) == (key, "cells", (300, 200))
    assert entry.has_image and entry.has_annotations and entry.has_predictions
    assert np.array_equal(again.load_annotations(key), annotation)
    np.testing.assert_array_equal(again.load_image(key), image)
    labels, meta = again.load_predictions(key)
    assert np.array_equal(labels, annotation * 2) and meta == {"model": "m", "knobs": {"a": 1}}


def test_region_write_touches_only_that_region(tmp_path):
    project = Project(tmp_path / "p.zarr")
    key = project.add_image(np.zeros((64, 64), np.uint8), name="x", store_image=False)
    first = np.zeros((64, 64), np.uint32)
    first[:5, :5] = 1
    project.save_annotations(key, first)
    second = first.copy()
    second[40:45, 40:45] = 2
    second[:5, :5] = 9  # outside the region: must not be written
    project.save_annotations(key, second, region=(slice(40, 45), slice(40, 45)))
    stored = project.load_annotations(key)
    assert (stored[40:45, 40:45] == 2).all() and (stored[:5, :5] == 1).all()
    assert project.load_image(key) is None


def test_same_pixels_same_key_renamed_or_not():
    a = np.arange(100, dtype=np.uint16).reshape(10, 10)
    assert image_key(a) == image_key(a.copy())
    assert image_key(a) != image_key(a.T.copy())
    assert image_key(a) != image_key(a.astype(np.uint8))


def test_refuses_foreign_folder_and_mismatched_shapes(tmp_path):
    (tmp_path / "other.zarr").mkdir()
    with pytest.raises(InputError, match="not a napari-instseg project"):
        Project(tmp_path / "other.zarr")
    with pytest.raises(FileNotFoundError):
        Project(tmp_path / "missing.zarr", create=False)
    project = Project(tmp_path / "p.zarr")
    key = project.add_image(np.zeros((8, 8)), name="x")
    project.save_annotations(key, np.zeros((8, 8), np.uint32))
    with pytest.raises(InputError, match="shape"):
        project.save_annotations(key, np.zeros((8, 9), np.uint32))
    with pytest.raises(InputError):
        project.save_annotations(key, np.full((8, 8), -1))


_WRITER = """
import sys, numpy as np
from napari_instseg.core.project import Project
project = Project(sys.argv[1])
key = project.add_image(np.zeros((512, 512), np.uint8), name="x", store_image=False)
print(key, flush=True)
i = 0
while True:  # alternate two annotations until killed
    i += 1
    project.save_annotations(key, np.full((512, 512), 1 + i % 2, np.uint32))
"""


def test_a_killed_writer_leaves_every_chunk_whole(tmp_path):
    """napari (or a training run) dying mid-save loses at most the last save, never a chunk."""
    import signal
    import subprocess
    import sys
    import time

    path = tmp_path / "p.zarr"
    child = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    key = child.stdout.readline().strip()
    time.sleep(1.0)
    child.send_signal(signal.SIGKILL)
    child.wait()
    stored = Project(path).load_annotations(key)
    assert stored is not None
    for y in range(0, 512, 256):  # the 256² chunks: each is one whole save, 1 or 2
        for x in range(0, 512, 256):
            chunk = stored[y : y + 256, x : x + 256]
            assert chunk.min() == chunk.max() and chunk.min() in (1, 2)
