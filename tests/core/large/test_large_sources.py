"""Lazy sources: TIFF, zarr v2/v3, OME-Zarr, staged arrays; global statistics."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import zarr

from napari_instseg.core.arrays import InputError
from napari_instseg.core.io.ome_zarr import write_ome_zarr
from napari_instseg.core.large.source import global_stats, open_source, stage_array


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, (300, 410)).astype(np.uint16)


@pytest.mark.parametrize("layout", ["tiled-tif", "strip-tif", "zarr2", "zarr3", "ome"])
def test_every_format_reads_the_same_regions(tmp_path, image, layout):
    if layout.endswith("tif"):
        path = tmp_path / "a.tif"
        tifffile.imwrite(path, image, **({"tile": (64, 64)} if layout == "tiled-tif" else {}))
    elif layout == "ome":
        path = tmp_path / "a.ome.zarr"
        write_ome_zarr(path, image, image.astype(np.uint32), image_name="a", levels=2)
    else:
        path = tmp_path / "a.zarr"
        fmt = 2 if layout == "zarr2" else 3
        arr = zarr.create_array(
            str(path), shape=image.shape, dtype=image.dtype, chunks=(100, 100), zarr_format=fmt
        )
        arr[...] = image
    src = open_source(path)
    assert src.spatial_shape == (300, 410) and src.channels == 1 and src.ndim == 2
    region = (slice(37, 251), slice(5, 399))
    block = src.read(region)
    assert block.dtype == np.float32 and block.shape == (1, 214, 394)
    np.testing.assert_array_equal(block[0], image[region])
    assert src.read(region, raw=True).dtype == np.uint16
    if layout == "ome":  # statistics come from the smaller pyramid level
        sample = src.sample(max_pixels=300 * 410 // 4)
        assert sample.shape == (1, 150, 205)


def test_channels_and_the_strided_sample(tmp_path):
    data = np.stack(
        [
            np.full((500, 600), 10, np.float32),
            np.arange(500 * 600, dtype=np.float32).reshape(500, 600),
        ],
        axis=-1,
    )
    path = tmp_path / "c.tif"
    tifffile.imwrite(path, data)
    src = open_source(path, channel_axis=2)
    assert src.channels == 2 and src.spatial_shape == (500, 600)
    np.testing.assert_array_equal(src.read((slice(0, 3), slice(0, 4)))[1], data[:3, :4, 1])
    sample = src.sample(max_pixels=30_000)  # every 4th pixel along Y and X
    np.testing.assert_array_equal(sample[1], data[::4, ::4, 1])
    lo, hi, _ = global_stats(src, low=0, high=100, max_pixels=30_000)
    assert lo.tolist() == [10.0, 0.0] and hi[1] == data[::4, ::4, 1].max()


def test_stage_array_copies_a_dask_array_slab_by_slab(tmp_path):
    import dask.array as da

    data = da.random.random((700, 300), chunks=(128, 128)).astype(np.float32)
    src = stage_array(data, tmp_path / "staged.zarr")
    np.testing.assert_array_equal(src.read((slice(0, 700), slice(0, 300)))[0], data.compute())


def test_bad_sources_are_refused(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_source(tmp_path / "missing.tif")
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="unsupported image format"):
        open_source(tmp_path / "a.png")
    (tmp_path / "b.tif").write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="cannot open"):
        open_source(tmp_path / "b.tif")
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((4, 5, 6, 7), np.uint8))
    with pytest.raises(InputError, match="give the channel axis"):
        open_source(tmp_path / "c.tif")
    nan = np.ones((100, 100), np.float32)
    nan[:50] = np.nan
    tifffile.imwrite(tmp_path / "d.tif", nan)
    with pytest.raises(InputError, match="NaN"):
        global_stats(open_source(tmp_path / "d.tif"))


def test_source_for_reads_the_layer_file_or_stages_a_copy(tmp_path, image):
    from napari_instseg.core.large.source import source_for

    path = tmp_path / "a.tif"
    tifffile.imwrite(path, image)
    src, staged = source_for(image, str(path), tmp_path / "s.zarr")
    assert staged is None and src.spec.path == str(path)
    edited = image[:200]  # not what the file holds: staged
    src, staged = source_for(edited, str(path), tmp_path / "s.zarr")
    assert staged == tmp_path / "s.zarr" and src.spatial_shape == (200, 410)
    src, staged = source_for(image, None, tmp_path / "t.zarr")
    np.testing.assert_array_equal(src.read((slice(0, 300), slice(0, 410)), raw=True)[0], image)
