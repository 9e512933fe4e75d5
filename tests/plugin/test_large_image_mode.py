"""The Segment widget's "large image" mode: blockwise on dask, progress per block, Cancel,
resume, and a written OME-Zarr that opens in napari as image + labels."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_instseg.core.io.ome_zarr import open_ome_zarr
from napari_instseg.core.samples import load_sample

pytestmark = [pytest.mark.gui, pytest.mark.slow]


@pytest.fixture(scope="module")
def scheduler():
    """A scheduler with one in-process worker, given to the widget by its address."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def large_widget(make_napari_viewer, tmp_path, scheduler, data):
    viewer = make_napari_viewer()
    if isinstance(data, np.ndarray):
        viewer.add_image(data, name="nuclei")
    else:  # a file: read lazily by the workers, not staged
        viewer.open(str(data), name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText("threeclass-nuclei")
    widget.image_box.setCurrentText("nuclei")
    widget.large.setChecked(True)
    widget.large.output.setText(str(tmp_path / "nuclei.ome.zarr"))
    widget.large.block.setValue(256)
    widget.large.scheduler.setText(scheduler)
    return viewer, widget


def test_large_mode_segments_blockwise_and_opens_the_result(
    make_napari_viewer, qtbot, tmp_path, scheduler
):
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer, widget = large_widget(make_napari_viewer, tmp_path, scheduler, image)
    seen = []
    widget.progress.valueChanged.connect(lambda v: seen.append((widget.progress.format(), v)))
    widget.run()
    qtbot.waitUntil(lambda: not widget.job.running, timeout=120_000)
    assert "objects in 4 blocks" in widget.status.text(), widget.status.text()
    layer = viewer.layers["nuclei [threeclass-nuclei]"]
    assert np.asarray(layer.data).max() > 50
    assert any("segment" in fmt and "blocks" in fmt for fmt, _ in seen)  # per-block progress
    # the OME-Zarr holds the image (staged from memory) and the labels, opened by napari
    viewer2 = make_napari_viewer()
    layers = viewer2.open(str(tmp_path / "nuclei.ome.zarr"), plugin="napari-instseg")
    kinds = sorted(type(lay).__name__ for lay in layers)
    assert kinds == ["Image", "Labels"]
    ome = open_ome_zarr(tmp_path / "nuclei.ome.zarr")
    np.testing.assert_array_equal(ome.image_levels[0][...], image)


def test_large_mode_cancel_keeps_blocks_and_the_next_run_resumes(
    make_napari_viewer, qtbot, tmp_path, scheduler
):
    image, _ = load_sample("nuclei2d_dsb_stardist")
    path = tmp_path / "big.tif"
    big = np.tile(np.asarray(image), (2, 2))
    tifffile.imwrite(path, big)
    viewer, widget = large_widget(make_napari_viewer, tmp_path, scheduler, path)
    widget.run()
    qtbot.waitUntil(
        lambda: widget.progress.value() >= 1 and "segment" in widget.progress.format(),
        timeout=120_000,
    )
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.job.running, timeout=120_000)
    text = widget.status.text()
    assert "cancelled" in text and "resumes" in text, text
    assert (tmp_path / "nuclei.ome.zarr.blocks").exists()
    assert "nuclei [threeclass-nuclei]" not in viewer.layers
    widget.run()
    qtbot.waitUntil(lambda: not widget.job.running, timeout=120_000)
    assert "resumed)" in widget.status.text() and "(0 resumed)" not in widget.status.text()
    assert "objects in 16 blocks" in widget.status.text(), widget.status.text()
    assert not (tmp_path / "nuclei.ome.zarr.input.zarr").exists()  # the file was read as is
