"""The Segment widget in a headless viewer: run, cancel, tune live, refuse bad layers."""

from __future__ import annotations

import json

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


def test_reset_save_defaults_and_cli_command(viewer_widget, qtbot, tmp_path):
    _, widget = viewer_widget
    run_and_wait(widget, qtbot)
    tune = widget.tune
    tune.form.editor("seed_threshold").setValue(0.75)
    qtbot.waitUntil(lambda: tune.shown_generation == tune.generation, timeout=10_000)
    command = tune.command()
    assert command.startswith(f"napari-instseg segment 'nuclei.tif' --model {MODEL}") or (
        command.startswith(f"napari-instseg segment nuclei.tif --model {MODEL}")
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
