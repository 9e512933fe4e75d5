"""Tests for napari_instseg.core.data.datasets: the shared folder layout."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_instseg.core.arrays import InputError
from napari_instseg.core.data import load_folder, normalise_percentile, read_image, read_split


def _write_layout(root, items: dict[str, str], shape=(12, 16)):
    """images/, masks/ and metadata.csv; image NAME has value k everywhere, mask id k."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = ["name,split"]
    for k, (name, split) in enumerate(items.items(), start=1):
        image = np.full(shape, 10 * k, np.uint16)
        image[0, 0] = 0
        labels = np.zeros(shape, np.uint16)
        labels[2:5, 3:7] = k
        tifffile.imwrite(root / "images" / f"{name}.tif", image)
        tifffile.imwrite(root / "masks" / f"{name}.tif", labels)
        rows.append(f"{name},{split}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    return root


def test_load_folder_reads_every_pair(tmp_path):
    root = _write_layout(tmp_path / "d", {"b": "train", "a": "train", "c": "val"})
    samples = load_folder(root)
    assert [s.name for s in samples] == ["a", "b", "c"]  # sorted by name
    for k, s in zip([2, 1, 3], samples, strict=True):
        assert s.image.shape == (1, 12, 16) and s.image.dtype == np.float32
        assert s.image[0, 5, 5] == 10 * k
        assert s.labels.dtype == np.uint32
        assert set(np.unique(s.labels)) == {0, k}
        assert s.known.dtype == bool and s.known.all()


def test_load_folder_one_split(tmp_path):
    root = _write_layout(tmp_path / "d", {"a": "train", "b": "val", "c": "train", "d": "test"})
    assert [s.name for s in load_folder(root, split="train")] == ["a", "c"]
    assert [s.name for s in load_folder(root, split="val")] == ["b"]
    assert [s.name for s in load_folder(root, split="train", names=["c", "zz"])] == ["c"]


def test_load_folder_normalises(tmp_path):
    root = _write_layout(tmp_path / "d", {"a": "train"})
    (s,) = load_folder(root, normalise=lambda x: normalise_percentile(x, low=0, high=100))
    assert s.image.min() == 0 and s.image.max() == 1


def test_read_split(tmp_path):
    root = _write_layout(tmp_path / "d", {"a": "train", "b": "val"})
    assert read_split(root) == {"a": "train", "b": "val"}


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(InputError, match="images/ and masks/"):
        load_folder(tmp_path / "nothing")


def test_missing_masks_folder_is_refused(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(InputError, match="images/ and masks/"):
        load_folder(tmp_path)


def test_missing_metadata_is_refused(tmp_path):
    root = _write_layout(tmp_path / "d", {"a": "train"})
    (root / "metadata.csv").unlink()
    with pytest.raises(InputError, match="metadata.csv"):
        load_folder(root)


def test_empty_split_is_refused(tmp_path):
    root = _write_layout(tmp_path / "d", {"a": "train"})
    with pytest.raises(InputError, match="no images .* split 'test'"):
        load_folder(root, split="test")


def test_mismatched_shapes_are_refused(tmp_path):
    root = _write_layout(tmp_path / "d", {"a": "train"})
    tifffile.imwrite(root / "masks" / "a.tif", np.zeros((5, 5), np.uint16))
    with pytest.raises(InputError, match="differ"):
        load_folder(root)


def test_float_mask_with_fractions_is_refused(tmp_path):
    root = _write_layout(tmp_path / "d", {"a": "train"})
    tifffile.imwrite(root / "masks" / "a.tif", np.full((12, 16), 0.5, np.float32))
    with pytest.raises(InputError, match="whole numbers"):
        load_folder(root)


def test_read_image_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_image(tmp_path / "x.tif")
    (tmp_path / "x.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match="unsupported image format"):
        read_image(tmp_path / "x.png")
    (tmp_path / "broken.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="cannot read"):
        read_image(tmp_path / "broken.tif")


def test_read_image_zarr_array_and_ome_group(tmp_path):
    import zarr

    data = np.arange(24, dtype=np.uint16).reshape(4, 6)
    arr = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, dtype=data.dtype)
    arr[...] = data
    np.testing.assert_array_equal(read_image(tmp_path / "a.zarr"), data)

    group = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    full = group.create_array("0", shape=data.shape, dtype=data.dtype)
    full[...] = data
    half = group.create_array("1", shape=(2, 3), dtype=data.dtype)
    half[...] = data[::2, ::2]
    group.attrs["multiscales"] = [{"datasets": [{"path": "0"}, {"path": "1"}]}]
    np.testing.assert_array_equal(read_image(tmp_path / "g.zarr"), data)
