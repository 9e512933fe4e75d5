"""The blockwise engine on dask.distributed: 2 worker processes on loopback, real model.

The workers are the engine's own LocalCluster (one per module). Test segmenters travel to
them by value (cloudpickle), since worker processes cannot import test modules.
"""

from __future__ import annotations

import sys
import time

import cloudpickle
import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage as ndi

from _blobs import blobs, same_partition
from napari_instseg.core.arrays import InputError
from napari_instseg.core.jobs import Progress, Stop, run
from napari_instseg.core.large.engine import DaskClient, segment_large
from napari_instseg.core.metrics import average_precision_dsb
from napari_instseg.core.samples import load_sample

cloudpickle.register_pickle_by_value(sys.modules[__name__])
pytestmark = pytest.mark.slow


class Threshold:
    """A local-support segmenter: smooth, threshold, connected components."""

    def __init__(self, delay: float = 0.0, fail_above: float | None = None):
        self.delay, self.fail_above = delay, fail_above

    def __call__(self, image, origin=()):
        if self.fail_above is not None and image.max() > self.fail_above:
            raise ValueError("this block is cursed")
        time.sleep(self.delay)
        return ndi.label(ndi.uniform_filter(image[0], 3) > 0.5)[0]


@pytest.fixture(scope="module")
def client():
    cluster = DaskClient(n_workers=2)  # two processes on 127.0.0.1
    yield cluster.client
    cluster.close()


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    """1024² of the real DSB nuclei sample, mirrored so content runs on across seams."""
    image, _ = load_sample("nuclei2d_dsb_stardist")
    image = np.asarray(image, np.float32)
    big = np.block([[image, image[:, ::-1]], [image[::-1], image[::-1, ::-1]]])
    path = tmp_path_factory.mktemp("mosaic") / "nuclei.tif"
    tifffile.imwrite(path, big, tile=(256, 256))
    return path, big


def test_real_model_blockwise_agrees_with_whole_image(client, mosaic, tmp_path):
    from sklearn.metrics import adjusted_rand_score

    from napari_instseg.core.pipeline import load_model, segment_image

    path, image = mosaic
    out = tmp_path / "labels.zarr"
    res = run(segment_large(path, out, "threeclass-nuclei", core=256, client=client))
    blocks = zarr.open_array(str(out), mode="r")
    assert blocks.shards == (256, 256) and blocks.dtype == np.uint32
    labels = blocks[...]
    whole = run(segment_image(load_model("threeclass-nuclei"), image)).labels
    # many real objects cross the block borders (every 256 px)
    boxes = [b for b in ndi.find_objects(whole) if b is not None]
    crossing = sum(any(s.start // 256 != (s.stop - 1) // 256 for s in b) for b in boxes)
    assert crossing >= 50
    assert average_precision_dsb(whole, labels, iou_threshold=0.5) >= 0.98
    assert adjusted_rand_score(whole.ravel(), labels.ravel()) >= 0.99
    assert set(np.unique(labels)) - {0} == set(range(1, res.n_objects + 1))
    assert res.stats["joined_objects"] > 0 and res.workers == 2
    assert len({b["pid"] for b in res.blocks}) == 2  # both worker processes did blocks
    attrs = blocks.attrs["napari_instseg"]
    assert attrs["model"] == "threeclass-nuclei" and attrs["objects"] == res.n_objects
    assert not (tmp_path / "labels.zarr.blocks").exists()  # the block store is gone


def test_ome_zarr_output_has_image_and_labels_pyramids(client, tmp_path):
    from napari_instseg.core.io.ome_zarr import open_ome_zarr

    image = blobs((600, 1100), 150) * 1000
    src = tmp_path / "blobs.tif"
    tifffile.imwrite(src, image.astype(np.uint16))
    out = tmp_path / "blobs.ome.zarr"
    res = run(segment_large(src, out, segmenter=Threshold(), core=256, halo=24, client=client))
    ome = open_ome_zarr(out)
    assert len(ome.image_levels) == 2 and len(ome.labels_levels["labels"]) == 2
    assert ome.image_levels[0].dtype == np.uint16
    np.testing.assert_array_equal(ome.image_levels[0][...], image.astype(np.uint16))
    labels = ome.labels_level("labels", 0)
    assert same_partition(labels, ndi.label(ndi.uniform_filter(image, 3) > 0.5)[0])
    np.testing.assert_array_equal(ome.labels_level("labels", 1), labels[::2, ::2])
    assert ome.image_levels[1].shape == (300, 550)
    assert res.n_objects == labels.max()


def test_labels_next_to_the_image_of_an_existing_ome_zarr(client, tmp_path):
    from napari_instseg.core.io.ome_zarr import open_ome_zarr, write_ome_zarr

    image = blobs((512, 512), 60)
    path = tmp_path / "cells.ome.zarr"
    write_ome_zarr(path, image, {"truth": image.astype(np.uint32)}, image_name="cells", levels=2)
    run(segment_large(path, path, segmenter=Threshold(), core=256, halo=24, client=client))
    ome = open_ome_zarr(path)
    assert set(ome.labels_levels) == {"truth", "labels"}
    assert len(ome.labels_levels["labels"]) == 2
    with pytest.raises(InputError, match="already has labels 'labels'"):
        run(segment_large(path, path, segmenter=Threshold(), core=256, halo=24, client=client))


def test_3d_blocks_are_exact_for_a_local_segmenter(client, tmp_path):
    image = blobs((40, 96, 96), 60, seed=2)
    src = tmp_path / "vol.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "vol.ome.zarr"
    run(segment_large(src, out, segmenter=Threshold(), core=(16, 64, 64), halo=12, client=client))
    from napari_instseg.core.io.ome_zarr import open_ome_zarr

    labels = open_ome_zarr(out).labels_level("labels", 0)
    assert same_partition(labels, ndi.label(ndi.uniform_filter(image, 3) > 0.5)[0])


def test_stop_then_resume_runs_only_the_remaining_blocks(client, tmp_path):
    image = blobs((300, 300), 80)
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "out.zarr"
    seg = Threshold(delay=0.4)
    job = segment_large(src, out, segmenter=seg, core=100, halo=20, client=client)
    event = next(job)
    with pytest.raises(StopIteration) as stopped:
        while True:
            stop = isinstance(event, Progress) and event.stage == "segment" and event.step >= 2
            event = job.send(Stop() if stop else None)
    assert stopped.value.value is None
    markers = list((tmp_path / "out.zarr.blocks" / "blocks").glob("*.npz"))
    assert 2 <= len(markers) < 9
    res = run(segment_large(src, out, segmenter=seg, core=100, halo=20, client=client))
    assert res.resumed_blocks == len(markers)
    assert len(res.blocks) == 9 - len(markers)
    labels = zarr.open_array(str(out), mode="r")[...]
    assert same_partition(labels, Threshold()(image[None]))


def test_a_failing_block_is_reported_and_done_blocks_are_kept(client, tmp_path):
    image = blobs((200, 200), 30)
    image[150:160, 150:160] = 9  # only the last block sees this
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, image)
    out = tmp_path / "out.zarr"
    with pytest.raises(RuntimeError, match="segment 3 failed: this block is cursed"):
        run(
            segment_large(
                src, out, segmenter=Threshold(fail_above=5), core=100, halo=10, client=client
            )
        )
    assert (tmp_path / "out.zarr.blocks" / "run.json").exists()


def test_bad_inputs_get_clear_messages(client, tmp_path):
    image = np.ones((300, 300), np.float32)
    image[:100] = np.nan
    src = tmp_path / "nan.tif"
    tifffile.imwrite(src, image)
    with pytest.raises(InputError, match="NaN"):
        run(segment_large(src, tmp_path / "a.zarr", "threeclass-nuclei", client=client))
    tifffile.imwrite(src, np.ones((20, 30, 40), np.float32))
    with pytest.raises(InputError, match="2D model but the image has 3"):
        run(segment_large(src, tmp_path / "b.zarr", "threeclass-nuclei", client=client))
    tifffile.imwrite(src, np.ones((300, 300), np.float32))
    (tmp_path / "c.zarr").mkdir()
    (tmp_path / "c.zarr" / "precious.txt").write_text("mine")
    with pytest.raises(InputError, match="exists"):
        run(segment_large(src, tmp_path / "c.zarr", segmenter=Threshold(), client=client))
    with pytest.raises(InputError, match="not a zarr store"):
        job = segment_large(
            src, tmp_path / "c.zarr", segmenter=Threshold(), client=client, overwrite=True
        )
        run(job)
    assert (tmp_path / "c.zarr" / "precious.txt").read_text() == "mine"
    with pytest.raises(InputError, match="two blocks would write the same shard"):
        run(
            segment_large(
                src, tmp_path / "d.zarr", segmenter=Threshold(), core=100, shard=64, client=client
            )
        )
    with pytest.raises(InputError, match=".zarr or .ome.zarr"):
        run(segment_large(src, tmp_path / "e.tif", segmenter=Threshold(), client=client))


def test_a_scheduler_given_by_address(tmp_path):
    from distributed import LocalCluster

    image = blobs((200, 260), 40)
    src = tmp_path / "img.tif"
    tifffile.imwrite(src, image)
    with LocalCluster(n_workers=1, processes=False, dashboard_address=None) as cluster:
        res = run(
            segment_large(
                src,
                tmp_path / "o.zarr",
                segmenter=Threshold(),
                core=128,
                halo=16,
                client=cluster.scheduler_address,
            )
        )
        assert res.workers == 1
    labels = zarr.open_array(str(tmp_path / "o.zarr"), mode="r")[...]
    assert same_partition(labels, Threshold()(image[None]))
    with pytest.raises(InputError, match="cannot reach the dask scheduler"):
        run(
            segment_large(
                src, tmp_path / "p.zarr", segmenter=Threshold(), client="tcp://127.0.0.1:9"
            )
        )


def test_cli_segments_a_folder_blockwise_on_a_given_scheduler(client, mosaic, tmp_path, capsys):
    from napari_instseg.cli import main

    path, image = mosaic
    folder = tmp_path / "in"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", image[:300, :400])
    tifffile.imwrite(folder / "b.tif", image[300:700, 200:500])
    address = client.scheduler.address
    code = main(
        [
            "segment",
            str(folder),
            "--model",
            "threeclass-nuclei",
            "--output",
            str(tmp_path / "out"),
            "--scheduler",
            address,
            "--block",
            "256",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert f"blockwise on {address}" in printed and "a.tif:" in printed and "b.tif:" in printed
    from napari_instseg.core.io.ome_zarr import open_ome_zarr

    for name, shape in (("a", (300, 400)), ("b", (400, 300))):
        ome = open_ome_zarr(tmp_path / "out" / f"{name}.ome.zarr")
        labels = ome.labels_level("labels", 0)
        assert labels.shape == shape and labels.max() > 10
