"""A project folder whose files were damaged (a chunk deleted, truncated or replaced) says so,
naming the file, instead of reading as "no objects" and blaming the user; ordinary sparse
annotation (chunks never painted) and interrupted saves are not mistaken for damage."""

from __future__ import annotations

import numpy as np
import pytest
from _faults import MODEL, one_line, run, snapshot

from napari_instseg.core.arrays import InputError
from napari_instseg.core.project import Project


@pytest.fixture
def project(tmp_path):
    """A project with one 300 x 300 image (four chunks) painted in its first chunk only."""
    rng = np.random.default_rng(0)
    image = rng.random((300, 300)).astype(np.float32)
    path = tmp_path / "cells.zarr"
    project = Project(path)
    key = project.add_image(image, name="cells.tif")
    annotation = np.zeros((300, 300), np.uint32)
    annotation[10:30, 10:30], annotation[50:70, 40:60] = 1, 2
    project.save_annotations(key, annotation)
    chunk = path / "entries" / key / "annotations" / "c" / "0" / "0"
    assert chunk.is_file() and not (chunk.parent / "1").exists()  # unpainted: no file
    return path, key, annotation, chunk


def test_a_deleted_chunk_is_damage_not_an_empty_annotation(project, capsys, models_env):
    path, key, _, chunk = project
    chunk.unlink()
    before = snapshot(path)
    with pytest.raises(InputError) as damaged:
        Project(path, create=False).load_annotations(key)
    text = str(damaged.value)
    assert "damaged" in text and str(chunk) in text and "backup" in text
    assert "paint" not in text
    rc, _, err = run(capsys, "train", "--from", MODEL, "--project", path, "--name", "x")
    assert rc == 2
    line = one_line(err, "train")
    assert "is damaged" in line and "'cells.tif'" in line and str(chunk) in line
    assert snapshot(path) == before  # nothing touched


def test_a_corrupt_chunk_is_named(project):
    path, key, _, chunk = project
    chunk.write_bytes(b"\x00" * 17)
    with pytest.raises(InputError, match=r"damaged.*cannot be read.*c/0/0"):
        Project(path, create=False).load_annotations(key)


def test_a_replaced_chunk_is_named(project):
    path, key, _, chunk = project
    other = Project(path.with_name("other.zarr"))
    k2 = other.add_image(np.ones((300, 300), np.float32), name="other")
    other.save_annotations(k2, np.full((300, 300), 7, np.uint32))
    chunk.write_bytes((path.with_name("other.zarr") / "entries" / k2 / "annotations" / "c" / "0"
                       / "0").read_bytes())  # fmt: skip
    with pytest.raises(InputError, match="missing or changed"):
        Project(path, create=False).load_annotations(key)


def test_sparse_region_saves_and_predictions_read_back(project):
    path, key, annotation, _ = project
    p = Project(path, create=False)
    annotation[280:290, 280:290] = 3  # a new object in the last chunk, saved as a region
    p.save_annotations(key, annotation, region=(slice(270, 300), slice(270, 300)))
    annotation[10:30, 10:30] = 0  # erase the first object: its chunk changes
    p.save_annotations(key, annotation, region=(slice(0, 40), slice(0, 40)))
    np.testing.assert_array_equal(Project(path).load_annotations(key), annotation)
    p.save_predictions(key, annotation, metadata={"model": "m"})
    labels, meta = Project(path).load_predictions(key)
    np.testing.assert_array_equal(labels, annotation)
    assert meta == {"model": "m"}


def test_an_interrupted_save_is_not_damage(project, monkeypatch):
    """Killed after the chunks were written but before their checksums were: readable."""
    import napari_instseg.core.project as module

    path, key, annotation, _ = project
    real = module._crc
    monkeypatch.setattr(module, "_crc", lambda block: (_ for _ in ()).throw(KeyboardInterrupt))
    annotation[100:120, 100:120] = 5
    with pytest.raises(KeyboardInterrupt):
        Project(path).save_annotations(key, annotation, region=(slice(0, 256), slice(0, 256)))
    monkeypatch.setattr(module, "_crc", real)
    np.testing.assert_array_equal(Project(path).load_annotations(key), annotation)


def test_a_damaged_image_copy_is_named(project):
    path, key, _, _ = project
    chunk = path / "entries" / key / "image" / "c" / "1" / "1"
    chunk.unlink()
    with pytest.raises(InputError, match=r"a chunk file of the image of 'cells.tif' is missing"):
        Project(path).load_image(key)
