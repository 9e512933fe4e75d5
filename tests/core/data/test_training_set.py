"""The training data policy: folders contribute equally, validation from every folder once,
sparse draws seeded, the dense masks kept for fitting and the object size."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import tifffile

from napari_instseg.core.arrays import InputError
from napari_instseg.core.data.training_set import load_training_set


def folder(root, n_train: int, n_val: int = 1, size: int = 10):
    """A dataset in the shared layout: each mask holds 4 squares of side ``size``."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(len(str(root)))
    with (root / "metadata.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["name", "split"])
        for k in range(n_train + n_val):
            name = f"{root.name}{k}"
            mask = np.zeros((48, 48), np.uint16)
            for i, (y, x) in enumerate([(2, 2), (2, 30), (30, 2), (30, 30)], 1):
                mask[y : y + size, x : x + size] = i
            tifffile.imwrite(root / "images" / f"{name}.tif", rng.random((48, 48), np.float32))
            tifffile.imwrite(root / "masks" / f"{name}.tif", mask)
            writer.writerow([name, "train" if k < n_train else "val"])
    return root


def test_each_folder_contributes_equally(tmp_path):
    small, large = folder(tmp_path / "small", 2), folder(tmp_path / "large", 6, n_val=2)
    data = load_training_set([small, large])
    names = [s.name for s in data.train]
    assert sum(n.startswith("small") for n in names) == 6  # repeated 3 times
    assert sum(n.startswith("large") for n in names) == 6
    assert sorted(s.name for s in data.val) == ["large6", "large7", "small2"]  # once each
    assert len(data.masks) == 8  # the dense masks once per training image, not repeated
    assert data.data_name == "small+large"


def test_a_smaller_folder_is_repeated_in_whole_copies(tmp_path):
    three, seven = folder(tmp_path / "a", 3), folder(tmp_path / "b", 7)
    data = load_training_set([three, seven])
    names = [s.name for s in data.train]
    assert sum(n.startswith("a") for n in names) == 6  # 7 // 3 copies, never a partial one
    assert sum(n.startswith("b") for n in names) == 7


def test_images_are_normalised_and_validation_can_be_skipped(tmp_path):
    data = load_training_set([folder(tmp_path / "d", 2)], val_split="")
    assert data.val == []
    image = data.train[0].image
    assert image.shape == (1, 48, 48) and image.dtype == np.float32
    assert np.percentile(image, 1.0) == pytest.approx(0.0, abs=1e-3)
    assert np.percentile(image, 99.8) == pytest.approx(1.0, abs=1e-3)


def test_sparse_keeps_a_seeded_share_and_the_dense_masks(tmp_path):
    root = folder(tmp_path / "d", 4)
    first = load_training_set([root], sparse=0.5, seed=3)
    again = load_training_set([root], sparse=0.5, seed=3)
    for a, b in zip(first.train, again.train, strict=True):
        np.testing.assert_array_equal(a.labels, b.labels)  # a resumed run sees the same
        np.testing.assert_array_equal(a.known, b.known)
    kept = [len(np.unique(s.labels[s.labels > 0])) for s in first.train]
    assert all(k < 4 for k in kept) and sum(kept) > 0
    assert all(not s.known.all() for s in first.train)  # the rest is unknown, not background
    assert all(len(np.unique(m[m > 0])) == 4 for m in first.masks)  # dense, for fitting


def test_object_size_is_measured_on_the_dense_masks(tmp_path):
    data = load_training_set([folder(tmp_path / "d", 2, size=10)], sparse=0.25)
    assert data.object_size() == pytest.approx(2 * np.sqrt(100 / np.pi), rel=1e-6)


@pytest.mark.parametrize("sparse", [0.0, -0.5, 1.5, float("nan")])
def test_a_bad_share_is_refused_before_any_data_is_read(tmp_path, sparse):
    with pytest.raises(InputError, match="sparse"):
        load_training_set([tmp_path / "nowhere"], sparse=sparse)


def test_no_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="at least one folder"):
        load_training_set([])
