"""The Segment widget in a headless viewer: run, cancel, tune live, refuse bad layers,
diameter and appearance."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_instseg.core.checkpoint import read_card
from napari_instseg.core.samples import load_sample

pytestmark = pytest.mark.gui

MODEL = "threeclass-nuclei"


@pytest.fixture
def viewer_widget(make_napari_viewer):
    viewer = make_napari_viewer()
    image, truth = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(image[:256, :256], name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)
    widget.image_box.setCurrentText("nuclei")
    return viewer, widget


def run_and_wait(widget, qtbot, timeout=60_000):
    widget.run()
    assert widget.job is not None, widget.status.text()
    qtbot.waitUntil(lambda: not widget.job.running, timeout=timeout)


def install_copy(name: str, **card_fields) -> None:
    """The shipped MODEL's weights as a user model ``name`` with other card fields."""
    from napari_instseg.core.zoo import user_model_dir, zoo_dir

    card = json.loads((zoo_dir() / f"{MODEL}.json").read_text())
    folder = user_model_dir()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.json").write_text(json.dumps({**card, "name": name, **card_fields}))
    shutil.copy(zoo_dir() / f"{MODEL}.safetensors", folder / f"{name}.safetensors")


def stained_discs(size=128, radius=7):
    """An H&E-like RGB image: 16 dark purple discs on a pink background, with noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    image = np.empty((size, size, 3), np.float32)
    image[:] = (236, 196, 218)
    for cy in range(16, size, 32):
        for cx in range(16, size, 32):
            image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2] = (92, 52, 140)
    image += rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_widget_lists_models_and_shows_card(viewer_widget):
    _, widget = viewer_widget
    names = [widget.model_box.itemText(i) for i in range(widget.model_box.count())]
    assert MODEL in names
    text = widget.card_label.text()
    assert "threeclass" in text and "AP@0.5" in text and "dsb2018_fluo" in text


def test_segment_writes_labels_layer_with_metadata(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    run_and_wait(widget, qtbot)
    name = f"nuclei [{MODEL}]"
    assert name in viewer.layers, widget.status.text()
    layer = viewer.layers[name]
    assert layer.data.dtype == np.uint32 and layer.data.shape == (256, 256)
    n = int(layer.data.max())
    assert n > 20
    assert np.array_equal(np.unique(layer.data), np.arange(n + 1))
    assert layer.metadata["model"] == MODEL
    assert layer.metadata["backend"] == "watershed"
    assert "seed_threshold" in layer.metadata["knobs"]
    assert "torch" in layer.metadata["versions"]
    assert f"{n} objects" in widget.status.text()
    assert widget.progress.value() == widget.progress.maximum()


def test_cancel_stops_and_changes_nothing(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(np.tile(image, (4, 4)), name="big")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)
    widget.image_box.setCurrentText("big")
    widget.tile_size.setValue(128)
    widget.run()
    qtbot.waitUntil(lambda: widget.progress.value() >= 1, timeout=60_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: not widget.job.running, timeout=60_000)
    assert widget.progress.value() < widget.progress.maximum()
    assert "cancelled" in widget.status.text()
    assert [lay.name for lay in viewer.layers] == ["big"]
    assert widget.run_button.isEnabled()


def test_moving_a_knob_updates_the_same_layer(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    run_and_wait(widget, qtbot)
    layer = widget.labels_layer
    before = layer.data.copy()
    names = [lay.name for lay in viewer.layers]
    widget.tune.form.editor("min_size").setValue(150)
    qtbot.waitUntil(lambda: widget.tune.shown_generation == widget.tune.generation, timeout=10_000)
    after = viewer.layers[layer.name].data
    assert [lay.name for lay in viewer.layers] == names  # replaced in place, no new layer
    assert int(after.max()) < int(before.max())
    assert layer.metadata["knobs"]["min_size"] == 150
    assert "objects" in widget.tune.status.text()
    assert widget.tune.latencies

    widget.tune.backend.setCurrentText("components")
    qtbot.waitUntil(lambda: widget.tune.shown_generation == widget.tune.generation, timeout=10_000)
    assert layer.metadata["backend"] == "components"
    assert "grow" in widget.tune.form.values()


def test_slow_tuning_keeps_the_gui_free_and_says_an_update_is_pending(
    viewer_widget, qtbot, monkeypatch
):
    import time

    from qtpy.QtCore import QTimer

    _, widget = viewer_widget
    run_and_wait(widget, qtbot)
    tune, layer = widget.tune, widget.labels_layer
    assemble = tune.tuner.assemble

    windows = []

    def slow_assemble(*args, **kwargs):  # as on a large image
        start = time.perf_counter()
        time.sleep(0.5)
        windows.append((start, time.perf_counter()))
        return assemble(*args, **kwargs)

    monkeypatch.setattr(tune.tuner, "assemble", slow_assemble)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(20)
    tune.form.editor("min_size").setValue(150)
    assert tune.pending and tune.status.text().startswith("updating")
    qtbot.wait(150)  # its assembly is running now
    tune.form.editor("min_size").setValue(160)  # asked for while the first one runs
    assert tune.status.text().startswith("updating")
    qtbot.waitUntil(lambda: not tune.pending, timeout=20_000)
    timer.stop()
    # two assemblies of 0.5 s ran, and the event loop kept turning while each did
    assert len(windows) == 2
    for start, end in windows:
        assert sum(start < t < end for t in ticks) >= 3, (start, end, ticks)
    assert layer.metadata["knobs"]["min_size"] == 160  # the newest setting, not the first
    assert tune.status.text().endswith("(watershed)") and "updating" not in tune.status.text()


def test_reset_save_defaults_and_cli_command(viewer_widget, qtbot, tmp_path):
    _, widget = viewer_widget
    run_and_wait(widget, qtbot)
    tune = widget.tune
    tune.form.editor("seed_threshold").setValue(0.75)
    qtbot.waitUntil(lambda: tune.shown_generation == tune.generation, timeout=10_000)
    command = tune.command()
    # the layer was made in memory: no file to name, and the command says so
    assert command.startswith(f"napari-instseg segment IMAGE.tif --model {MODEL}")
    assert command.endswith(
        "# layer 'nuclei' has no file: save it and put its path in place of IMAGE.tif"
    )
    assert "--set seed_threshold=0.75" in command
    tune.copy_command()
    from qtpy.QtWidgets import QApplication

    assert QApplication.clipboard().text() == command

    path = tune.save_defaults(tmp_path)
    card = read_card(path)
    assert card.parent == MODEL and card.backend_config["seed_threshold"] == 0.75
    assert json.loads(path.read_text())["name"] == f"{MODEL}-tuned"

    tune.reset()
    qtbot.waitUntil(lambda: tune.shown_generation == tune.generation, timeout=10_000)
    default = widget.model.card.backend_config["seed_threshold"]
    assert tune.form.values()["seed_threshold"] == pytest.approx(default)


def test_copied_command_of_a_layer_read_from_disk_runs_as_copied(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    import shlex

    import tifffile
    from qtpy.QtWidgets import QApplication

    from napari_instseg.cli import main

    image, _ = load_sample("nuclei2d_dsb_stardist")
    folder = tmp_path / "my images"
    folder.mkdir()
    tifffile.imwrite(folder / "nuclei crop.tif", image[:128, :128])
    monkeypatch.chdir(folder)  # opened by a relative path, as from `napari-instseg view`
    viewer = make_napari_viewer()
    viewer.open("nuclei crop.tif", plugin=None)
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)
    widget.image_box.setCurrentText("nuclei crop")
    run_and_wait(widget, qtbot)
    widget.tune.form.editor("min_size").setValue(40)
    qtbot.waitUntil(lambda: widget.tune.shown_generation == widget.tune.generation, timeout=10_000)
    widget.tune.copy_button.click()
    copied = QApplication.clipboard().text()
    args = shlex.split(copied)
    assert args[:2] == ["napari-instseg", "segment"] and "#" not in copied
    assert args[2] == str(folder / "nuclei crop.tif")  # absolute: runs from any folder

    monkeypatch.chdir(tmp_path)
    assert main(args[1:]) == 0
    written = tifffile.imread(tmp_path / "labels" / "nuclei crop.tif")
    layer = widget.labels_layer.data
    assert written.shape == layer.shape
    assert np.array_equal(written > 0, layer > 0)  # the same setting, the same objects


@pytest.mark.parametrize(
    "data, channel_axis, channel, message",
    [
        (np.full((64, 64), np.nan, np.float32), None, -1, "NaN"),
        (np.ones((3, 64, 64), np.float32), 0, -1, "pick one channel"),
        (np.ones((3, 64, 64), np.float32), 0, 7, "outside the channel axis"),
    ],
)
def test_bad_layers_are_refused_with_a_message(
    make_napari_viewer, data, channel_axis, channel, message
):
    viewer = make_napari_viewer()
    viewer.add_image(data, name="bad")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)
    widget.image_box.setCurrentText("bad")
    if channel_axis is not None:
        widget.channel_axis.setCurrentIndex(widget.channel_axis.findData(channel_axis))
    widget.channel.setValue(channel)
    widget.run()
    assert "cannot use layer" in widget.status.text()
    assert message in widget.status.text()
    assert [lay.name for lay in viewer.layers] == ["bad"]


def test_rgb_and_time_axes(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _ = load_sample("nuclei2d_dsb_stardist")
    crop = image[:128, :128].astype(np.uint8)
    viewer.add_image(np.stack([crop] * 3, axis=-1), name="rgb", rgb=True)
    series = np.stack([crop, np.zeros_like(crop), crop])
    viewer.add_image(series, name="series")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)

    widget.image_box.setCurrentText("rgb")
    run_and_wait(widget, qtbot)
    assert viewer.layers[f"rgb [{MODEL}]"].data.shape == (128, 128)

    widget.image_box.setCurrentText("series")
    viewer.dims.set_current_step(0, 2)
    run_and_wait(widget, qtbot)
    labels = viewer.layers[f"series [{MODEL}]"].data
    assert labels.shape == (3, 128, 128)
    assert labels[2].max() > 0 and labels[0].max() == 0 and labels[1].max() == 0


def test_viewer_stays_responsive_while_segmenting(make_napari_viewer, qtbot):
    from qtpy.QtCore import QTimer

    viewer = make_napari_viewer()
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(np.tile(image, (2, 2)), name="big")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)
    widget.image_box.setCurrentText("big")
    widget.tile_size.setValue(256)  # 36 tiles of 256² for 1024²
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(widget.progress.value()))
    timer.start(10)
    try:
        widget.run()
        qtbot.waitUntil(lambda: not widget.job.running, timeout=120_000)
    finally:
        timer.stop()
    # The GUI thread kept running its event loop while tiles were predicted in the worker:
    # timer ticks happened at many different progress values, not only before and after.
    assert len(set(ticks)) >= 4, sorted(set(ticks))
    assert f"big [{MODEL}]" in viewer.layers


def test_embedseg_with_tta_and_intermediate_layers(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.model_box.setCurrentText("embedseg-nuclei")
    assert widget.tta.isEnabled()
    widget.tta.setChecked(True)
    widget.intermediate.setChecked(True)
    run_and_wait(widget, qtbot)
    base = "nuclei [embedseg-nuclei]"
    assert viewer.layers[base].data.max() > 20
    assert viewer.layers[f"{base} seediness"].data.shape == (256, 256)
    offsets = viewer.layers[f"{base} offsets"]
    assert offsets.rgb and offsets.data.shape == (256, 256, 3)
    assert widget.tune.backend.currentText() == "seeds"
    assert widget.tune.tuner.prediction.info["tta"] is True


def test_embedding_model_shows_embedding_and_switches_clustering(
    make_napari_viewer, qtbot, save_tiny_spoco
):
    from napari_instseg.core.zoo import user_model_dir

    save_tiny_spoco(user_model_dir())

    viewer = make_napari_viewer()
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(image[:64, :64], name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText("spoco-tiny")
    widget.image_box.setCurrentText("nuclei")
    widget.intermediate.setChecked(True)
    run_and_wait(widget, qtbot)
    base = "nuclei [spoco-tiny]"
    emb = viewer.layers[f"{base} pixel_embedding"]
    assert emb.rgb and emb.data.shape == (64, 64, 3)
    assert viewer.layers[f"{base} foreground"].data.shape == (64, 64)
    layer = widget.labels_layer
    assert layer.metadata["backend"] == "meanshift"
    assert {"bandwidth", "split_disconnected"} <= set(widget.tune.form.values())
    widget.tune.backend.setCurrentText("hdbscan")
    qtbot.waitUntil(lambda: widget.tune.shown_generation == widget.tune.generation, timeout=20_000)
    assert layer.metadata["backend"] == "hdbscan"
    assert "min_cluster_size" in widget.tune.form.values()


def test_a_model_of_another_modality_gets_a_note(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    image, _ = load_sample("phase2d_usiigaci_set1_crop512")
    viewer.add_image(image[:128, :128], name="cells")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)  # trained on fluorescence nuclei
    widget.image_box.setCurrentText("cells")
    run_and_wait(widget, qtbot)
    text = widget.status.text()
    assert "objects" in text and "looks like phase-contrast" in text
    assert "trained on fluorescence" in text


def test_affinity_model_runs_the_mutex_watershed_live(
    make_napari_viewer, qtbot, save_tiny_affinity
):
    from napari_instseg.core.zoo import user_model_dir

    save_tiny_affinity(user_model_dir())

    viewer = make_napari_viewer()
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(image[:64, :64], name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText("affinity-tiny")
    widget.image_box.setCurrentText("nuclei")
    widget.intermediate.setChecked(True)
    run_and_wait(widget, qtbot)
    base = "nuclei [affinity-tiny]"
    assert viewer.layers[f"{base} pixel_embedding"].data.shape == (64, 64, 3)
    assert f"{base} affinity_offsets" not in viewer.layers  # a list of offsets, not a map
    layer = widget.labels_layer
    assert layer.metadata["backend"] == "mutex_watershed"
    assert {"stride", "merge_size", "fg_threshold"} <= set(widget.tune.form.values())


def test_allcell_reports_its_route_and_a_choice_knob_changes_it(
    make_napari_viewer, qtbot, save_tiny_allcell
):
    from napari_instseg.core.zoo import user_model_dir

    save_tiny_allcell(user_model_dir())
    viewer = make_napari_viewer()
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(image[:64, :64], name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText("allcell-tiny")
    widget.image_box.setCurrentText("nuclei")
    run_and_wait(widget, qtbot)
    layer = widget.labels_layer
    assert layer.metadata["report"]["modality"] == "fluorescence"
    assert layer.metadata["report"]["route"] == "detection"
    assert "fluorescence image: detection route" in widget.status.text()
    route = widget.tune.form.editor("route")  # a drop-down of the allowed values
    assert [route.itemText(i) for i in range(route.count())] == ["auto", "detection", "flows"]
    route.setCurrentText("flows")
    qtbot.waitUntil(lambda: layer.metadata["report"]["route"] == "flows", timeout=10000)
    assert layer.metadata["knobs"]["route"] == "flows"


def test_patchperpix_re_assembles_live_from_its_cached_voting(
    make_napari_viewer, qtbot, save_tiny_patchperpix
):
    from napari_instseg.core.assembly import patches as patch_consensus
    from napari_instseg.core.zoo import user_model_dir

    save_tiny_patchperpix(user_model_dir())
    viewer = make_napari_viewer()
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(image[:64, :64], name="nuclei")
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText("patchperpix-tiny")
    widget.image_box.setCurrentText("nuclei")
    run_and_wait(widget, qtbot)
    layer = widget.labels_layer
    assert layer.metadata["backend"] == "patch_consensus"
    assert layer.metadata["knobs"]["mws"] is True
    votes = {k: list(v) for k, v in patch_consensus._CACHE.items()}
    widget.tune.form.editor("mws").setChecked(False)  # a check box for a bool knob
    qtbot.waitUntil(lambda: layer.metadata["knobs"]["mws"] is False, timeout=10000)
    now = {k: list(v) for k, v in patch_consensus._CACHE.items()}
    assert now == votes and any(votes.values())  # the cheap knob voted nothing new


def test_the_picker_shows_each_dataset_of_a_multi_dataset_model():
    from napari_instseg.core.zoo import find_model
    from napari_instseg.plugin.segment_widget import describe_card

    card, _ = find_model("allcell")
    text = describe_card(card)
    by_data = card.metrics["test_by_data"]
    for name in ("dsb2018_fluo", "usiigaci_phase"):
        assert f"{by_data[name]['ap@0.50']:.3f} ({name})" in text
    assert "modality: any" in text
    card, _ = find_model("embedseg-cells")
    assert f"test AP@0.5: {card.metrics['test']['ap@0.50']:.3f}" in describe_card(card)
    assert f"trained on: usiigaci_phase ({card.training['split']});" in describe_card(card)


def test_models_trained_on_the_same_data_state_the_same_typical_object():
    """Issue 29: spoco-nuclei said "typical object: 7 px" where its twins trained on the same
    images said 17 px. Every card measures its training objects the same way (the median
    equivalent diameter of all objects of the training split, also when the method trained
    from a sparse subset), so twins agree."""
    from pathlib import Path

    from napari_instseg.core.zoo import list_models, zoo_dir
    from napari_instseg.plugin.segment_widget import describe_card

    by_data: dict = {}
    for card, path in list_models():
        if card.parent is None and Path(path).parent == zoo_dir():
            key = (card.training.get("data"), card.training.get("split"))
            size = describe_card(card).split("typical object: ")[1].split("<")[0]
            by_data.setdefault(key, set()).add(size)
    assert all(len(sizes) == 1 for sizes in by_data.values()), by_data
    assert by_data[("dsb2018_fluo", "train")] == {"20 px"}  # six models, spoco-nuclei too


def test_a_fine_tuned_card_names_its_data_without_empty_brackets():
    import dataclasses

    from napari_instseg.core.zoo import find_model
    from napari_instseg.plugin.segment_widget import describe_card

    card, _ = find_model("spoco-nuclei")
    tuned = dataclasses.replace(
        card, training={"data": "sparse annotations made in napari"}, parent="spoco-nuclei"
    )
    text = describe_card(tuned)
    assert "trained on: sparse annotations made in napari;" in text and "()" not in text
    assert "fine-tuned from <b>spoco-nuclei</b>" in text


def test_a_stained_rgb_layer_is_unmixed_not_greyed(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_image(stained_discs(), name="he", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.model_box.setCurrentText(MODEL)  # fluorescence nuclei
    widget.image_box.setCurrentText("he")
    assert widget.appearance.currentText() == "auto"
    run_and_wait(widget, qtbot)
    layer = viewer.layers[f"he [{MODEL}]"]
    assert layer.data.shape == (128, 128)
    assert layer.metadata["appearance"]["mode"] == "stain"
    assert int(layer.data.max()) >= 12  # of the 16 discs
    assert "appearance stain (stained colour image" in widget.status.text()

    widget.appearance.setCurrentText("as-is")  # grey: dark discs on pink, not what it learnt
    run_and_wait(widget, qtbot)
    assert layer.metadata["appearance"]["mode"] == "as-is"
    assert int(layer.data.max()) < 12
    assert "--appearance as-is" in widget.tune.command()

    widget.channel.setValue(2)  # an explicit colour channel still works
    run_and_wait(widget, qtbot)
    assert layer.data.shape == (128, 128) and not layer.metadata["appearance"]["colour"]


def test_diameter_off_or_given_resizes_and_tuning_stays_on_the_input_grid(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    install_copy("threeclass-sized", working_diameter=20.0)
    widget.refresh_models()
    widget.model_box.setCurrentText("threeclass-sized")
    assert widget.diameter.text() == "auto"  # the card has a working diameter
    widget.intermediate.setChecked(True)
    widget.diameter.setText("off")
    run_and_wait(widget, qtbot)
    layer = widget.labels_layer
    assert layer.data.shape == (256, 256)
    assert layer.metadata["diameter"]["factor"] == 1.0
    assert layer.metadata["diameter"]["source"] == "off"
    assert "diameter off (native scale)" in widget.status.text()
    assert "--diameter off" in widget.tune.command()

    widget.diameter.setText("40")
    run_and_wait(widget, qtbot)
    assert layer.data.shape == (256, 256) and int(layer.data.max()) > 10
    assert layer.metadata["diameter"]["factor"] == pytest.approx(0.5)
    assert layer.metadata["diameter"]["source"] == "given"
    assert "diameter 40.0 px (given), resized x0.50" in widget.status.text()
    assert widget.tune.tuner.prediction.image_shape == (128, 128)
    interior = viewer.layers["nuclei [threeclass-sized] interior"]
    assert interior.data.shape == (128, 128)
    assert tuple(interior.scale) == (2.0, 2.0) and tuple(interior.translate) == (0.5, 0.5)
    assert "--diameter 40" in widget.tune.command()

    before = int(layer.data.max())
    widget.tune.form.editor("min_size").setValue(150)
    qtbot.waitUntil(lambda: widget.tune.shown_generation == widget.tune.generation, timeout=10_000)
    assert layer.data.shape == (256, 256)
    assert 0 < int(layer.data.max()) < before
    assert layer.metadata["diameter"]["factor"] == pytest.approx(0.5)


@pytest.mark.parametrize("text", ["-3", "nan", "abc", "9999"])
def test_a_bad_diameter_is_refused_with_a_message(viewer_widget, text):
    viewer, widget = viewer_widget
    widget.diameter.setText(text)
    widget.run()
    assert widget.job is None
    assert "diameter" in widget.status.text()
    assert [lay.name for lay in viewer.layers] == ["nuclei"]


def test_measure_a_line_or_a_label_and_estimate(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.measure_button.click()
    assert "nothing to measure" in widget.status.text()

    shapes = viewer.add_shapes([[10, 10], [10, 40]], shape_type="line", name="ruler")
    shapes.add_lines([[50, 50], [90, 80]])  # the last one drawn: 50 px
    widget.measure_button.click()
    assert widget.diameter.text() == "50.0"
    assert "last line drawn in 'ruler'" in widget.status.text()
    shapes.selected_data = {0}
    widget.measure_button.click()
    assert widget.diameter.text() == "30.0"

    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.uint32)
    labels[(yy - 20) ** 2 + (xx - 20) ** 2 <= 10**2] = 1
    labels[40:50, 40:60] = 2  # 200 px: equivalent diameter 16.0
    layer = viewer.add_labels(labels, name="mine")  # now the active layer
    layer.selected_label = 2
    widget.measure_button.click()
    assert widget.diameter.text() == "16.0"
    assert "label 2 in 'mine'" in widget.status.text()
    viewer.layers.selection.active = viewer.layers["nuclei"]  # the line again
    widget.measure_button.click()
    assert widget.diameter.text() == "30.0"
    assert "selected line in 'ruler'" in widget.status.text()

    widget.estimate_button.click()
    qtbot.waitUntil(lambda: "estimated diameter" in widget.status.text(), timeout=30_000)
    assert 10 < float(widget.diameter.text()) < 40  # DSB nuclei of this sample: ~20 px


def test_model_is_preselected_by_the_images_modality(make_napari_viewer):
    viewer = make_napari_viewer()
    nuclei, _ = load_sample("nuclei2d_dsb_stardist")
    phase, _ = load_sample("phase2d_usiigaci_set1_crop512")
    viewer.add_image(phase[:128, :128], name="cells")
    viewer.add_image(nuclei[:128, :128], name="nuclei")
    viewer.add_image(stained_discs(), name="stained", rgb=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    widget.image_box.setCurrentText("nuclei")
    assert widget.model_box.currentText() == "generalist-nuclei"
    widget.image_box.setCurrentText("cells")  # the best shipped phase-contrast model
    assert widget.model_box.currentText() == "embedseg-cells"
    widget.image_box.setCurrentText("stained")  # the generalist learnt stained nuclei too
    assert widget.model_box.currentText() == "generalist-nuclei"
    widget.model_box.setCurrentText(MODEL)  # the user's choice is kept from now on
    widget.image_box.setCurrentText("cells")
    assert widget.model_box.currentText() == MODEL


def test_widget_docked_before_any_image_preselects_when_one_is_opened(make_napari_viewer):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    assert widget.model_box.currentText() == "generalist-nuclei"
    phase, _ = load_sample("phase2d_usiigaci_set1_crop512")
    viewer.add_image(phase[:128, :128], name="cells")
    assert widget.model_box.currentText() == "embedseg-cells"


def test_preferred_model_without_the_generalist():
    from types import SimpleNamespace

    from napari_instseg.plugin.segment_widget import preferred_model

    def card(name, modality, ap):
        return SimpleNamespace(name=name, modality=modality, test_ap50=lambda: {"d": ap})

    cards = [
        card("a-cells", "phase-contrast", 0.6),
        card("b-cells", "phase-contrast", 0.7),
        card("c-nuclei", "fluorescence", None),
        card("d-nuclei", "fluorescence", 0.8),
        card("e-any", "", 0.5),
    ]
    assert preferred_model(cards, "phase-contrast") == "b-cells"
    assert preferred_model(cards, "fluorescence") == "d-nuclei"
    assert preferred_model(cards, "brightfield") == "e-any"  # no brightfield model
    assert preferred_model(cards[:2], "brightfield") == "a-cells"  # nothing fits: the first
    assert preferred_model(cards, None) == "a-cells"
    assert preferred_model([], "fluorescence") is None
    with_generalist = [*cards, card("generalist-nuclei", "fluorescence", 0.1)]
    assert preferred_model(with_generalist, "brightfield") == "generalist-nuclei"
    assert preferred_model(with_generalist, "phase-contrast") == "b-cells"


def test_layer_metadata_is_the_provenance_segment_writes(viewer_widget, qtbot, tmp_path, capsys):
    """The widget and ``segment`` record the same provenance for the same image, model and
    knobs (one function makes both), and Save Layers keeps all of it."""
    import tifffile

    from napari_instseg.cli import main
    from napari_instseg.core.io import read_labels
    from napari_instseg.core.io.provenance import PROVENANCE_KEYS, jsonable, kept_provenance

    viewer, widget = viewer_widget
    widget.device.setCurrentText("cpu")
    assert widget.diameter.text() == "off"  # the model has no working diameter
    run_and_wait(widget, qtbot)
    layer = viewer.layers[f"nuclei [{MODEL}]"]
    tifffile.imwrite(tmp_path / "nuclei.tif", np.asarray(viewer.layers["nuclei"].data))
    rc = main(["segment", str(tmp_path / "nuclei.tif"), "--model", MODEL,
               "--output", str(tmp_path / "out"), "--device", "cpu",
               "--diameter", "off"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    how = json.loads((tmp_path / "out" / "nuclei.json").read_text())

    assert set(PROVENANCE_KEYS) <= set(layer.metadata)
    assert jsonable(kept_provenance(layer.metadata)) == kept_provenance(how)
    assert np.array_equal(layer.data, tifffile.imread(tmp_path / "out" / "nuclei.tif"))

    viewer.layers.selection = {layer}  # File > Save Layers, our TIFF writer
    saved = viewer.layers.save(str(tmp_path / "saved.tif"), selected=True, plugin="napari-instseg")
    assert saved == [str(tmp_path / "saved.tif")]
    _, attrs = read_labels(tmp_path / "saved.tif")
    assert kept_provenance(attrs) == kept_provenance(how)
