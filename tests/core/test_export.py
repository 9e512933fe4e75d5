"""core.io: TIFF / zarr / OME-Zarr round trips, the object table against scikit-image, bad
inputs, atomic writes and tuned model copies. No Qt."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
import zarr
from skimage.measure import regionprops

from napari_instseg.core.arrays import InputError
from napari_instseg.core.io import export_format, ome_zarr, read_labels
from napari_instseg.core.io.model_copy import export_model
from napari_instseg.core.io.ome_zarr import (
    default_levels,
    open_ome_zarr,
    read_ome_zarr,
    write_ome_zarr,
)
from napari_instseg.core.io.table import object_table, write_object_table
from napari_instseg.core.io.tiff import write_labels_tiff
from napari_instseg.core.io.zarr import write_labels_zarr
from napari_instseg.core.samples import load_sample

ATTRS = {
    "model": "threeclass-nuclei",
    "method": "threeclass",
    "backend": "watershed",
    "knobs": {"seed_threshold": 0.75, "min_size": np.int64(12)},
}


@pytest.fixture(scope="module")
def nuclei():
    image, truth = load_sample("nuclei2d_dsb_stardist")
    return image, truth.astype(np.uint32)


@pytest.fixture(scope="module")
def nuclei3d():
    image, truth = load_sample("nuclei3d_synthetic_stardist")
    return image, truth.astype(np.uint32)


def leftovers(folder: Path) -> list[str]:
    """Hidden staging files or folders left next to the targets."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# -- TIFF and zarr ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(40, 50), (5, 40, 50)])
def test_tiff_round_trip_keeps_ids_dtype_and_attrs(tmp_path, shape):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 70000, size=shape).astype(np.int64)  # ids beyond uint16
    path = write_labels_tiff(tmp_path / "labels.tif", labels, attrs=ATTRS)
    with tifffile.TiffFile(path) as tif:
        assert len(tif.pages) == (shape[0] if len(shape) == 3 else 1)
        page = tif.pages[0]
        assert page.dtype == np.uint32
        assert page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE
        assert tif.series[0].axes == "ZYX"[-len(shape) :]
    back, attrs = read_labels(path)
    assert back.dtype == np.uint32 and np.array_equal(back, labels)
    assert attrs["model"] == "threeclass-nuclei" and attrs["knobs"]["min_size"] == 12
    assert np.array_equal(tifffile.imread(path), labels)


@pytest.mark.parametrize("shape", [(300, 70), (3, 40, 300)])
def test_zarr_round_trip_is_v3_chunked_and_compressed(tmp_path, shape):
    labels = np.arange(np.prod(shape), dtype=np.uint32).reshape(shape) % 977
    path = write_labels_zarr(tmp_path / "labels.zarr", labels, attrs=ATTRS)
    meta = json.loads((path / "zarr.json").read_text())
    assert meta["zarr_format"] == 3 and meta["data_type"] == "uint32"
    assert meta["dimension_names"] == list("zyx"[-len(shape) :])
    assert any(c["name"] == "blosc" for c in meta["codecs"])
    arr = zarr.open_array(str(path), mode="r")
    assert arr.chunks != arr.shape  # really chunked
    assert np.array_equal(arr[...], labels)
    back, attrs = read_labels(path)
    assert np.array_equal(back, labels) and attrs["backend"] == "watershed"


# -- OME-Zarr ---------------------------------------------------------------------------------
def _ome_case(kind: str):
    rng = np.random.default_rng(1)
    if kind == "2d":
        return rng.integers(0, 4000, (70, 90)).astype(np.uint16), None, (70, 90)
    if kind == "2d-rgb":
        return rng.integers(0, 255, (70, 90, 3)).astype(np.uint8), -1, (70, 90)
    if kind == "3d":
        return rng.random((6, 70, 90)).astype(np.float32), None, (6, 70, 90)
    return rng.random((2, 6, 70, 90)).astype(np.float32), 0, (6, 70, 90)  # 3d + channels


@pytest.mark.parametrize("kind", ["2d", "2d-rgb", "3d", "3d-channels"])
def test_ome_zarr_round_trip(tmp_path, kind):
    image, channel_axis, spatial = _ome_case(kind)
    labels = (np.arange(np.prod(spatial)).reshape(spatial) // 37 % 50).astype(np.uint32)
    path = write_ome_zarr(
        tmp_path / "cells.ome.zarr",
        image,
        labels,
        image_name="cells",
        labels_name="nuclei",
        channel_axis=channel_axis,
        attrs=ATTRS,
        levels=3,
    )
    back, back_labels, meta = read_ome_zarr(path)
    expected = image if channel_axis is None else np.moveaxis(image, channel_axis, 0)
    assert back.dtype == image.dtype and np.array_equal(back, expected)
    assert list(back_labels) == ["nuclei"] and np.array_equal(back_labels["nuclei"], labels)
    assert meta["name"] == "cells" and meta["version"] == "0.5" and meta["levels"] == 3
    assert meta["channel_axis"] == (None if channel_axis is None else 0)
    assert meta["labels_attrs"]["nuclei"]["knobs"]["seed_threshold"] == 0.75

    root = json.loads((path / "zarr.json").read_text())["attributes"]["ome"]
    axes = root["multiscales"][0]["axes"]
    names = (["c"] if channel_axis is not None else []) + list("zyx"[-len(spatial) :])
    assert [a["name"] for a in axes] == names
    assert [a["type"] for a in axes] == ["channel" if n == "c" else "space" for n in names]
    group = json.loads((path / "labels" / "zarr.json").read_text())["attributes"]["ome"]
    assert group == {"version": "0.5", "labels": ["nuclei"]}
    label_meta = json.loads((path / "labels" / "nuclei" / "zarr.json").read_text())
    ome = label_meta["attributes"]["ome"]
    assert ome["image-label"]["source"] == {"image": "../../"}
    assert len(ome["multiscales"][0]["datasets"]) == 3
    level0 = json.loads((path / "labels" / "nuclei" / "0" / "zarr.json").read_text())
    assert level0["data_type"] == "uint32" and level0["dimension_names"] == names
    # the spec: each label dimension equals the image's, or 1 where it does not apply
    assert level0["shape"] == [1 if n == "c" else s for n, s in zip(names, back.shape, strict=True)]


def test_ome_zarr_pyramid_levels_align(tmp_path):
    rng = np.random.default_rng(2)
    image = rng.integers(0, 1000, (3, 41, 67)).astype(np.uint16)  # odd sides
    labels = rng.integers(0, 9, (3, 41, 67)).astype(np.uint32)
    path = write_ome_zarr(
        tmp_path / "a.ome.zarr",
        image,
        labels,
        image_name="a",
        spacing=(2.0, 0.5, 0.25),
        levels=3,
    )
    ome = open_ome_zarr(path)
    assert [lvl.shape for lvl in ome.image_levels] == [(3, 41, 67), (3, 21, 34), (3, 11, 17)]
    for k in range(3):
        low = ome.labels_level("labels", k)
        assert low.shape == ome.image_levels[k].shape
        assert np.array_equal(low, labels[:, :: 2**k, :: 2**k])  # nearest: ids kept
    assert ome.scales == ((2.0, 0.5, 0.25), (2.0, 1.0, 0.5), (2.0, 2.0, 1.0))
    # image level 1 is the 2x2 block mean (edge-padded), rounded back to uint16
    level1 = np.asarray(ome.image_levels[1][...])
    block = image[:, 4:6, 10:12].astype(float).mean(axis=(1, 2))
    assert np.array_equal(level1[:, 2, 5], np.rint(block).astype(np.uint16))
    edge = image[:, 40, 66]  # the last odd row and column pad with themselves
    assert np.array_equal(level1[:, 20, 33], edge)

    # block means are centred between the pixels they average; strided labels are not
    def transforms(node):
        return [
            d["coordinateTransformations"] for d in node.attrs["ome"]["multiscales"][0]["datasets"]
        ]

    root = zarr.open_group(str(path), mode="r")
    image_t = transforms(root)
    assert len(image_t[0]) == 1  # level 0: scale only
    assert image_t[1][1] == {"type": "translation", "translation": [0.0, 0.25, 0.125]}
    assert image_t[2][1] == {"type": "translation", "translation": [0.0, 0.75, 0.375]}
    assert all(len(t) == 1 for t in transforms(root["labels"]["labels"]))


@pytest.mark.parametrize(
    ("shape", "levels"),
    [((300, 300), 1), ((511, 4000), 1), ((512, 512), 2), ((2048, 2048), 4), ((31, 1024, 600), 2)],
)
def test_default_levels(shape, levels):
    assert default_levels(shape) == levels


def test_ome_zarr_default_levels_on_a_larger_image(tmp_path):
    image = np.zeros((600, 520), np.uint8)
    labels = np.zeros((600, 520), np.uint32)
    labels[100:300, 50:60] = 4
    ome = open_ome_zarr(write_ome_zarr(tmp_path / "b.ome.zarr", image, labels, image_name="b"))
    assert [lvl.shape for lvl in ome.image_levels] == [(600, 520), (300, 260)]


def test_ome_zarr_several_labels_with_their_own_attrs(tmp_path):
    image = np.ones((20, 30), np.float32)
    a, b = np.zeros((20, 30), np.uint32), np.ones((20, 30), np.uint32)
    path = write_ome_zarr(
        tmp_path / "c.ome.zarr",
        image,
        {"cells [model/a]": a, "truth": b},
        image_name="c",
        attrs={"cells [model/a]": {"model": "m1"}, "truth": {}},
    )
    _, labels, meta = read_ome_zarr(path)
    assert set(labels) == {"cells [model_a]", "truth"}  # no path separators in node names
    assert meta["labels_attrs"]["cells [model_a]"] == {"model": "m1"}
    assert np.array_equal(labels["truth"], b)


# -- object table -----------------------------------------------------------------------------
def _check_against_regionprops(table, labels, image):
    props = regionprops(labels, intensity_image=image)
    assert table["id"].tolist() == [p.label for p in props]
    assert table["area"].tolist() == [int(p.area) for p in props]
    axes = "zyx"[-labels.ndim :]
    for i, name in enumerate(axes):
        np.testing.assert_allclose(table[f"centroid_{name}"], [p.centroid[i] for p in props])
        assert table[f"bbox_min_{name}"].tolist() == [p.bbox[i] for p in props]
        assert table[f"bbox_max_{name}"].tolist() == [p.bbox[labels.ndim + i] for p in props]
    np.testing.assert_allclose(table["mean_intensity"], [p.intensity_mean for p in props])


def test_object_table_matches_regionprops_on_real_nuclei(nuclei):
    image, truth = nuclei
    table = object_table(truth, image, metadata=ATTRS)
    assert len(table["id"]) == 125
    _check_against_regionprops(table, truth, image)
    assert list(table)[-4:] == ["model", "method", "backend", "knobs"]
    assert set(table["model"]) == {"threeclass-nuclei"}
    assert json.loads(table["knobs"][0]) == {"min_size": 12, "seed_threshold": 0.75}


def test_object_table_3d_and_sparse_huge_ids(nuclei3d):
    image, truth = nuclei3d
    table = object_table(truth, image)
    assert {"centroid_z", "bbox_min_z", "bbox_max_z"} <= set(table)
    _check_against_regionprops(table, truth, image)
    huge = np.where(truth > 0, truth.astype(np.uint64) * 65_537 + 1_000_000, 0).astype(np.uint32)
    sparse = object_table(huge, image)
    assert sparse["id"].tolist() == sorted(set(np.unique(huge)) - {0})
    assert sparse["area"].tolist() == table["area"].tolist()
    np.testing.assert_allclose(sparse["centroid_z"], table["centroid_z"])


def test_object_table_per_channel_means_and_metadata_defaults():
    labels = np.array([[0, 1, 1], [2, 2, 0]], np.uint32)
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = [[9, 2, 4], [6, 8, 9]]
    rgb[..., 2] = 100
    table = object_table(labels, rgb, channel_axis=-1)
    assert table["mean_intensity_0"].tolist() == [3.0, 7.0]
    assert table["mean_intensity_1"].tolist() == [0.0, 0.0]
    assert table["mean_intensity_2"].tolist() == [100.0, 100.0]
    assert "mean_intensity" not in table
    assert table["model"].tolist() == ["", ""] and table["knobs"].tolist() == ["", ""]


def test_object_table_csv_opens_in_pandas(tmp_path, nuclei):
    pd = pytest.importorskip("pandas")
    image, truth = nuclei
    path = write_object_table(tmp_path / "nuclei.csv", truth, image, metadata=ATTRS)
    df = pd.read_csv(path)
    assert len(df) == 125
    areas = np.bincount(truth.ravel())
    ids = np.flatnonzero(areas)[1:]
    assert df["id"].tolist() == ids.tolist()
    assert df["area"].tolist() == areas[ids].tolist()
    table = object_table(truth, image)
    np.testing.assert_array_equal(df["centroid_x"].to_numpy(), table["centroid_x"])  # exact
    assert (df["model"] == "threeclass-nuclei").all() and (df["backend"] == "watershed").all()
    assert json.loads(df["knobs"][0])["seed_threshold"] == 0.75


def test_object_table_of_empty_labels_has_a_header_only(tmp_path):
    path = write_object_table(tmp_path / "none.csv", np.zeros((8, 8), np.uint8))
    lines = path.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("id,area,centroid_y,centroid_x")


# -- bad input --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([[0.0, 1.5], [2.0, 0.0]]), "whole numbers"),
        (np.array([[0, -1], [2, 0]]), "non-negative"),
        (np.zeros((2, 3, 4, 5), np.uint32), r"2D \(Y, X\) or 3D"),
        (np.zeros(7, np.uint32), r"2D \(Y, X\) or 3D"),
        (np.zeros((2, 2), np.complex64), "integers"),
        (None, "no labels"),
    ],
)
def test_bad_labels_are_refused_for_every_format(tmp_path, labels, message):
    image = np.zeros((2, 2), np.float32)
    writers = [
        lambda: write_labels_tiff(tmp_path / "a.tif", labels),
        lambda: write_labels_zarr(tmp_path / "a.zarr", labels),
        lambda: write_object_table(tmp_path / "a.csv", labels),
        lambda: write_ome_zarr(tmp_path / "a.ome.zarr", image, labels, image_name="a"),
    ]
    for write in writers:
        with pytest.raises(InputError, match=message):
            write()
    assert list(tmp_path.iterdir()) == []


def test_ome_zarr_refuses_missing_image_and_shape_mismatch(tmp_path):
    labels = np.zeros((10, 12), np.uint32)
    with pytest.raises(InputError, match="needs the image"):
        write_ome_zarr(tmp_path / "a.ome.zarr", None, labels, image_name="a")
    with pytest.raises(InputError, match=r"shape \(10, 12\).*spatial shape is \(12, 10\)"):
        write_ome_zarr(tmp_path / "a.ome.zarr", np.zeros((12, 10)), labels, image_name="a")
    with pytest.raises(InputError, match="2 or 3 spatial axes"):
        write_ome_zarr(tmp_path / "a.ome.zarr", np.zeros((2, 3, 10, 12)), labels, image_name="a")
    with pytest.raises(InputError, match="levels must be at least 1"):
        write_ome_zarr(
            tmp_path / "a.ome.zarr", np.zeros((10, 12)), labels, image_name="a", levels=0
        )
    with pytest.raises(InputError, match="does not match"):
        object_table(labels, np.zeros((12, 10)))
    assert list(tmp_path.iterdir()) == []


def test_existing_targets_need_overwrite(tmp_path):
    labels = np.ones((4, 4), np.uint32)
    tif = write_labels_tiff(tmp_path / "a.tif", labels)
    with pytest.raises(InputError, match="already exists"):
        write_labels_tiff(tif, labels * 2)
    write_labels_tiff(tif, labels * 2, overwrite=True)
    assert tifffile.imread(tif).max() == 2

    store = write_labels_zarr(tmp_path / "a.zarr", labels)
    with pytest.raises(InputError, match="already exists"):
        write_labels_zarr(store, labels)
    write_labels_zarr(store, labels * 3, overwrite=True)
    assert read_labels(store)[0].max() == 3

    (tmp_path / "empty.zarr").mkdir()  # an empty folder is fine to fill
    write_labels_zarr(tmp_path / "empty.zarr", labels)

    precious = tmp_path / "precious.zarr"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not a zarr store"):
        write_labels_zarr(precious, labels, overwrite=True)
    assert (precious / "notes.txt").read_text() == "keep me"
    with pytest.raises(InputError, match="is a folder"):
        write_object_table(precious, labels, overwrite=True)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.tif", "tiff"),
        ("A.TIFF", "tiff"),
        ("a.zarr", "zarr"),
        ("a.ome.zarr", "ome-zarr"),
        ("a.csv", "csv"),
    ],
)
def test_export_format_by_suffix(name, kind):
    assert export_format(name) == kind


@pytest.mark.parametrize("name", ["a.png", "a", ".zarr", "a.json"])
def test_export_format_refuses_unknown_suffix(name):
    with pytest.raises(InputError, match="cannot tell the export format"):
        export_format(name)


# -- atomicity --------------------------------------------------------------------------------
def test_failed_exports_leave_no_target(tmp_path, monkeypatch):
    labels = np.ones((600, 600), np.uint32)
    image = np.ones((600, 600), np.uint16)

    def half_then_fail(path, *args, **kwargs):
        Path(path).write_bytes(b"II*\x00 half a tiff")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_labels_tiff(tmp_path / "a.tif", labels)

    def fail(*_a, **_k):
        raise MemoryError("out of memory at level 1")

    monkeypatch.setattr(ome_zarr, "halve_mean", fail)  # level 0 is written, level 1 fails
    with pytest.raises(MemoryError):
        write_ome_zarr(tmp_path / "a.ome.zarr", image, labels, image_name="a")
    assert list(tmp_path.iterdir()) == []

    # a failing overwrite keeps the old export intact
    monkeypatch.undo()
    old = write_ome_zarr(tmp_path / "b.ome.zarr", image, labels, image_name="b", levels=1)
    monkeypatch.setattr(ome_zarr, "halve_mean", fail)
    with pytest.raises(MemoryError):
        write_ome_zarr(old, image, labels * 2, image_name="b", overwrite=True)
    _, back, _ = read_ome_zarr(old)
    assert back["labels"].max() == 1
    assert leftovers(tmp_path) == []


# -- model ------------------------------------------------------------------------------------
@pytest.fixture
def tiny_model(tmp_path):
    import torch

    from napari_instseg.core.checkpoint import ModelCard, save_model
    from napari_instseg.core.configs import config_to_dict
    from napari_instseg.core.methods import get_method

    method = get_method("threeclass")
    cfg = method.config_type(depth=2, width=4)
    torch.manual_seed(0)
    card = ModelCard(
        "tiny",
        "threeclass",
        config_to_dict(cfg),
        "watershed",
        backend_config={"min_size": 5},
        metrics={"test": {"ap@0.50": 0.5}},
    )
    return save_model(tmp_path / "src", "tiny", method.build_net(cfg), card)


def test_export_model_writes_weights_and_a_card_with_tuned_defaults(tmp_path, tiny_model):
    from napari_instseg.core.checkpoint import load_model, read_card

    out = tmp_path / "out"
    card_path = export_model(tiny_model, out, backend="watershed", knobs={"seed_threshold": "0.8"})
    assert card_path == out / "tiny-tuned.json"
    assert sorted(p.name for p in out.iterdir()) == ["tiny-tuned.json", "tiny-tuned.safetensors"]
    card = read_card(card_path)
    assert card.name == "tiny-tuned" and card.parent == "tiny" and card.backend == "watershed"
    assert card.backend_config["seed_threshold"] == 0.8  # converted from the string
    assert card.backend_config["min_size"] == 5  # the source card's default stays
    assert card.metrics == {"test": {"ap@0.50": 0.5}}
    source_card, source_net = load_model(tiny_model)
    _, net = load_model(card_path)
    for key, value in source_net.state_dict().items():
        assert np.array_equal(net.state_dict()[key].numpy(), value.numpy())

    with pytest.raises(InputError, match="already exist"):
        export_model(tiny_model, out, knobs={"seed_threshold": 0.9})
    assert read_card(card_path).backend_config["seed_threshold"] == 0.8
    export_model(tiny_model, out, knobs={"seed_threshold": 0.9}, overwrite=True)
    assert read_card(card_path).backend_config["seed_threshold"] == 0.9

    named = export_model((source_card, source_net), out, name="mine", backend="components")
    assert read_card(named).backend == "components" and read_card(named).name == "mine"
    assert leftovers(out) == []


def test_export_model_refuses_bad_knobs_backend_and_name(tmp_path, tiny_model):
    with pytest.raises(InputError, match="unknown option"):
        export_model(tiny_model, tmp_path / "o", knobs={"no_such_knob": 1})
    with pytest.raises(InputError, match="does not fit method"):
        export_model(tiny_model, tmp_path / "o", backend="meanshift")
    with pytest.raises(InputError, match="not usable as a model name"):
        export_model(tiny_model, tmp_path / "o", name="../escape")
    assert not (tmp_path / "o").exists()


def test_zlib_is_really_used_for_tiff(tmp_path):
    labels = np.zeros((256, 256), np.uint32)
    labels[50:100, 50:100] = 7
    path = write_labels_tiff(tmp_path / "z.tif", labels)
    assert path.stat().st_size < labels.nbytes // 20
    with tifffile.TiffFile(path) as tif:
        raw = tif.filehandle
        page = tif.pages[0]
        raw.seek(page.dataoffsets[0])
        chunk = raw.read(page.databytecounts[0])
    assert zlib.decompress(chunk)[: 4 * 256] == bytes(4 * 256)


def test_export_labels_dispatches_by_suffix_and_refuses_what_a_format_cannot_hold(tmp_path):
    from napari_instseg.core.arrays import InputError
    from napari_instseg.core.io import export_labels

    labels = np.zeros((32, 32), np.uint32)
    labels[4:10, 4:10] = 1
    labels[20:28, 15:25] = 2
    image = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    for name in ("a.tif", "a.zarr", "a.ome.zarr"):
        export_labels(tmp_path / name, labels, image, attrs={"model": "m"})
        back, attrs = read_labels(tmp_path / name)
        assert np.array_equal(back, labels) and attrs.get("model") == "m", name
    table = export_labels(tmp_path / "a.csv", labels, image, metadata={"model": "m"})
    assert len(table.read_text().strip().splitlines()) == 3  # header + two objects
    assert export_labels(tmp_path / "a.zip", labels).exists()
    assert export_labels(tmp_path / "a.geojson", labels).exists()
    with pytest.raises(InputError, match="exists"):
        export_labels(tmp_path / "a.tif", labels)  # never silently replaced
    with pytest.raises(InputError, match="needs the image"):
        export_labels(tmp_path / "b.ome.zarr", labels)
    with pytest.raises(InputError, match="one label image"):
        export_labels(tmp_path / "b.tif", {"x": labels, "y": labels})
    with pytest.raises(InputError, match="unknown export format"):
        export_labels(tmp_path / "b.tif", labels, kind="png")
