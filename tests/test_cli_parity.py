"""The CLI takes what the Segment widget takes: stacks segmented plane by plane, one channel of
a multichannel or RGB image; and it tells where it is in a folder, its version, and what each
option means. Run in-process (no Qt)."""

from __future__ import annotations

import json
import re
import time
from importlib.metadata import version

import numpy as np
import pytest
import tifffile

from napari_instseg.cli import _progress_driver, build_parser, main
from napari_instseg.core.jobs import Progress
from napari_instseg.core.samples import sample_data_dir

#: A shipped model that finds the sample's nuclei in a fraction of a second per 96 px plane.
MODEL = "threeclass-nuclei"
FAST = ("--model", MODEL, "--diameter", "off", "--device", "cpu")


def run(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_line_error(err: str, command: str = "segment") -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"napari-instseg {command}: error: "), lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def planes() -> np.ndarray:
    """Three different 96 x 96 crops of the nuclei sample, as a (T, Y, X) stack."""
    image = tifffile.imread(sample_data_dir() / "images" / "nuclei2d_dsb_stardist.tif")
    return np.stack([image[y : y + 96, x : x + 96] for y, x in ((0, 0), (96, 160), (200, 40))])


def segment_alone(capsys, tmp_path, image: np.ndarray, name: str) -> np.ndarray:
    """The labels of ``image`` segmented as a file of its own."""
    path = tmp_path / "alone" / f"{name}.tif"
    path.parent.mkdir(exist_ok=True)
    tifffile.imwrite(path, image)
    rc, _, err = run(capsys, "segment", path, "--output", tmp_path / "alone_out", *FAST)
    assert rc == 0, err
    return tifffile.imread(tmp_path / "alone_out" / f"{name}.tif")


def assert_planes_match(stack: np.ndarray, alone: list[np.ndarray]) -> None:
    """Each plane holds the labels of that plane segmented alone, ids run on."""
    offset = 0
    for plane, single in zip(stack, alone, strict=True):
        assert single.max() > 3, "the model should find nuclei in every crop"
        expected = np.where(single > 0, single + offset, 0)
        np.testing.assert_array_equal(plane, expected)
        offset += int(single.max())
    ids = np.unique(stack)
    np.testing.assert_array_equal(ids, np.arange(offset + 1))  # unique across the stack


def test_a_time_stack_is_segmented_plane_by_plane(capsys, tmp_path, planes):
    path = tmp_path / "movie.tif"
    tifffile.imwrite(path, planes)
    rc, out, err = run(capsys, "segment", path, "--output", tmp_path / "out", *FAST)
    assert rc == 0, err
    labels = tifffile.imread(tmp_path / "out" / "movie.tif")
    assert labels.dtype == np.uint32 and labels.shape == planes.shape
    alone = [segment_alone(capsys, tmp_path, p, f"t{i}") for i, p in enumerate(planes)]
    assert_planes_match(labels, alone)
    total = int(labels.max())
    assert f"movie.tif: 3 planes (axis 0) one by one, {total} objects" in out
    how = json.loads((tmp_path / "out" / "movie.json").read_text())
    assert how["stack_axes"] == [0]
    assert [p["index"] for p in how["planes"]] == [[0], [1], [2]]
    assert [p["objects"] for p in how["planes"]] == [int(a.max()) for a in alone]
    assert how["planes"][-1]["ids"][1] == total


def test_one_channel_of_a_time_by_channel_stack(capsys, tmp_path, planes):
    # (T, C, Y, X): the nuclei in channel 1, noise in channel 0
    noise = np.random.default_rng(0).integers(0, 255, planes.shape).astype(planes.dtype)
    path = tmp_path / "tc.tif"
    tifffile.imwrite(path, np.stack([noise, planes], axis=1))
    rc, out, err = run(
        capsys, "segment", path, "--output", tmp_path / "out", "--channel-axis", "1",
        "--channel", "1", *FAST,
    )  # fmt: skip
    assert rc == 0, err
    labels = tifffile.imread(tmp_path / "out" / "tc.tif")
    assert labels.shape == planes.shape
    alone = [segment_alone(capsys, tmp_path, p, f"t{i}") for i, p in enumerate(planes)]
    assert_planes_match(labels, alone)
    how = json.loads((tmp_path / "out" / "tc.json").read_text())
    assert (how["channel_axis"], how["channel"]) == (1, 1)


def test_one_colour_of_an_rgb_stack(capsys, tmp_path, planes):
    # (T, Y, X, 3) RGB: the nuclei in green only
    rgb = np.zeros((*planes.shape, 3), planes.dtype)
    rgb[..., 1] = planes
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    rc, out, err = run(
        capsys, "segment", path, "--output", tmp_path / "out", "--channel", "1", *FAST
    )
    assert rc == 0, err
    labels = tifffile.imread(tmp_path / "out" / "rgb.tif")
    assert labels.shape == planes.shape
    alone = [segment_alone(capsys, tmp_path, p, f"t{i}") for i, p in enumerate(planes)]
    assert_planes_match(labels, alone)


def test_an_rgb_tiff_goes_to_the_appearance_step(capsys, tmp_path, planes):
    """Without --channel the colours are kept for the appearance step, as in the widget."""
    grey = planes[0]
    path = tmp_path / "colour.tif"
    tifffile.imwrite(path, np.stack([grey] * 3, axis=-1), photometric="rgb")
    rc, out, err = run(capsys, "segment", path, "--output", tmp_path / "out", *FAST)
    assert rc == 0, err
    labels = tifffile.imread(tmp_path / "out" / "colour.tif")
    how = json.loads((tmp_path / "out" / "colour.json").read_text())
    assert labels.shape == grey.shape and "planes" not in how
    assert how["appearance"]["colour"] is True
    # grey copied into R, G and B is that grey: the same labels as the grey image
    np.testing.assert_array_equal(labels, segment_alone(capsys, tmp_path, grey, "grey"))


@pytest.mark.parametrize(
    "shape, extra, words",
    [
        ((64, 64), ("--channel", "0"), "--channel needs --channel-axis"),
        ((64, 64, 2), (), "last axis has only 2 values"),
        ((2, 64, 64), ("--channel-axis", "0", "--channel", "2"), "channel 2 is outside"),
        ((64, 64, 3), ("--channel", "3"), "channel 3 is outside"),
        ((64, 64), ("--channel-axis", "3"), "channel axis 3 is outside"),
        ((64, 64), ("--channel", "0", "--large"), "--channel is not available block by block"),
    ],
)
def test_a_channel_that_cannot_be_read_is_one_line(capsys, tmp_path, shape, extra, words):
    path = tmp_path / "img.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8))
    rc, _, err = run(capsys, "segment", path, "--output", tmp_path / "out", *FAST, *extra)
    assert rc == 2
    assert words in one_line_error(err)


def test_a_folder_says_which_image_of_how_many(capsys, tmp_path, planes):
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(("a", "b")):
        tifffile.imwrite(folder / f"{name}.tif", planes[i])
    rc, out, err = run(capsys, "segment", folder, "--output", tmp_path / "out", *FAST)
    assert rc == 0, err
    lines = out.splitlines()
    assert any(line.startswith("[1/2] a.tif: ") for line in lines), out
    assert any(line.startswith("[2/2] b.tif: ") for line in lines), out
    assert re.search(r"^2 images in [\d.]+ s -> ", out, re.MULTILINE)


def test_progress_rate_counts_only_work_done_while_shown(capsys):
    """A job whose first event comes with work already done (the first batch of tiles) must
    not print that work as done in no time (it printed 76260.07predict/s)."""

    def job():
        yield Progress("plane", 0, 2)
        yield Progress("predict", 50, 100)  # half done at the first event
        for step in (60, 70):
            time.sleep(0.6)  # past tqdm's minimum interval, so these ticks are printed
            yield Progress("predict", step, 100)
        yield Progress("plane", 1, 2)
        yield Progress("predict", 100, 100)
        return "result"

    assert _progress_driver(job(), desc="img.tif") == "result"
    err = capsys.readouterr().err
    assert "img.tif plane 1/2" in err and "img.tif plane 2/2" in err
    rates = [float(r) for r in re.findall(r"([\d.]+)predict/s", err)]
    assert rates, err  # the later ticks do show a rate
    assert max(rates) < 100, err  # 10 tiles per 0.6 s: about 17/s, never 50 in no time


def test_version_is_the_installed_distributions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"napari-instseg {version('napari-instseg')}"


def test_every_argument_of_every_command_says_what_it_is():
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    missing = [
        f"{name} {action.option_strings[0] if action.option_strings else action.dest}"
        for name, command in commands.items()
        for action in command._actions
        if not action.help
    ]
    assert not missing, f"no help text: {missing}"
    evaluate = commands["evaluate"].format_help()
    for words in ("predicted labels", "ground-truth labels", "IoU thresholds", "as JSON"):
        assert words in evaluate
    segment = commands["segment"].format_help()
    for words in ("side of the tiles", "context added around each tile", "only this channel"):
        assert words in " ".join(segment.split())


@pytest.mark.parametrize("value", ["0.5,x", "0,0.5", "1.5"])
def test_bad_thresholds_are_refused(capsys, tmp_path, value):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(tmp_path), str(tmp_path), "--thresholds", value])
    assert exit_info.value.code == 2
    assert "--thresholds" in capsys.readouterr().err


def test_view_model_is_checked_then_passed_to_the_viewer(capsys, monkeypatch):
    from napari_instseg.plugin import launch

    # an unknown name is refused by open_viewer itself, before napari starts
    rc, _, err = run(capsys, "view", "--model", "no-such-model")
    assert rc == 2 and "no-such-model" in one_line_error(err, "view")
    opened = []
    monkeypatch.setattr(launch, "open_viewer", lambda paths, **kw: opened.append((paths, kw)))
    rc, _, err = run(capsys, "view", "--model", MODEL)
    assert rc == 0, err
    assert opened == [([], {"sample": "nuclei2d_dsb_stardist", "model": MODEL})]
