"""The Fine-tune widget: a short run in a worker, responsive viewer, Stop, Resume, picker."""

from __future__ import annotations

import html
import time

import numpy as np
import pytest
from qtpy.QtCore import Qt, QTimer

from napari_instseg.core.data.sparse import BACKGROUND_LABEL
from napari_instseg.core.samples import load_sample

pytestmark = pytest.mark.gui


@pytest.fixture
def setup(make_napari_viewer, tmp_path, monkeypatch, save_tiny_spoco):
    from napari_instseg.core.zoo import user_model_dir

    monkeypatch.setenv("NAPARI_INSTSEG_PROJECT", str(tmp_path / "project.zarr"))
    save_tiny_spoco(user_model_dir())

    viewer = make_napari_viewer()
    image, truth = load_sample("nuclei2d_dsb_stardist")
    image, truth = image[:96, :96], truth[:96, :96]
    viewer.add_image(image, name="nuclei")
    _, annotate = viewer.window.add_plugin_dock_widget("napari-instseg", "Annotate")
    annotate.image_box.setCurrentText("nuclei")
    layer = annotate.annotate()
    ids = np.unique(truth)[1:9]
    data = np.where(np.isin(truth, ids), truth, 0).astype(np.uint32)
    data[:6, :6] = BACKGROUND_LABEL
    layer.data = data
    _, train = viewer.window.add_plugin_dock_widget("napari-instseg", "Fine-tune")
    train.model_box.setCurrentText("spoco-tiny")
    train.form.editor("patch_size").setValue(32)
    train.form.editor("batch_size").setValue(2)
    train.form.editor("device").setCurrentText("cpu")
    return viewer, train


def test_lists_sparse_models_and_annotations(setup):
    viewer, train = setup
    models = [train.model_box.itemText(i) for i in range(train.model_box.count())]
    assert "spoco-tiny" in models and "spoco-nuclei" in models
    assert "threeclass-nuclei" not in models and "allcell" not in models  # dense losses
    from napari_instseg.core.methods import get_method
    from napari_instseg.core.zoo import list_models

    sparse = [c.name for c, _ in list_models() if get_method(c.method).sparse_labels]
    assert sorted(models) == sorted(sparse)  # every model that can learn from a few objects
    assert train.checked_layers() == ["nuclei annotations"]
    assert train.name.text() == "spoco-tiny-finetuned"


def test_short_run_keeps_viewer_responsive_and_publishes_model(setup, qtbot):
    viewer, train = setup
    train.form.editor("iterations").setValue(10)
    train.form.editor("preview_every").setValue(5)
    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(20)
    t0 = time.perf_counter()
    train.start()
    assert train.job is not None, train.status.text()
    qtbot.waitUntil(lambda: train.result is not None, timeout=120_000)
    elapsed = time.perf_counter() - t0
    timer.stop()
    result = train.result
    assert result.model_path is not None, train.status.text()
    assert not result.run.stopped and result.run.iterations_done == 10
    # The event loop kept turning while the worker trained: one tick per 20 ms if free; a
    # blocked loop would give about one. A fast run has few ticks to give, so the bar is a
    # quarter of what the run's length allows, and at least 3.
    assert len(ticks) >= max(3, 0.25 * elapsed / 0.02), (len(ticks), elapsed)
    assert len(train.plot.loss) == 2 and train.plot.ap  # loss at 5, 10; held-out AP
    assert "nuclei [fine-tune preview]" in viewer.layers
    assert viewer.layers["nuclei [fine-tune preview]"].data.shape == (96, 96)
    assert "saved as model 'spoco-tiny-finetuned'" in train.status.text()

    _, segment = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    segment.model_box.showPopup()  # opening the picker re-reads the model folders
    segment.model_box.hidePopup()
    models = [segment.model_box.itemText(i) for i in range(segment.model_box.count())]
    assert "spoco-tiny-finetuned" in models


def test_stop_keeps_checkpoints_and_resume_continues(setup, qtbot):
    viewer, train = setup
    train.form.editor("iterations").setValue(100_000)
    train.start()
    qtbot.waitUntil(lambda: train.progress.value() >= 2, timeout=60_000)
    train.stop()
    qtbot.waitUntil(lambda: train.result is not None, timeout=60_000)
    first = train.result
    assert first.run.stopped and first.model_path is not None
    assert train.resume_button.isEnabled() and train.start_button.isEnabled()
    done = first.run.iterations_done
    train.result = None
    train.form.editor("iterations").setValue(done + 5)
    train.resume_button.click()
    qtbot.waitUntil(lambda: train.result is not None, timeout=60_000)
    assert train.result.run.iterations_done == done + 5 and not train.result.run.stopped


def test_refuses_to_start_without_annotations(setup):
    viewer, train = setup
    viewer.layers.remove("nuclei annotations")
    train.start()
    assert train.job is None and "no annotations" in train.status.text()


def _checked(widget) -> list[str]:
    return [widget.item(i).text() for i in range(widget.count())]


def test_context_list_offers_the_other_open_images_when_adapting(setup):
    viewer, train = setup
    assert train.context.isHidden() and train.context_layers() == []
    image = viewer.layers["nuclei"].data
    viewer.add_image(image[::-1], name="other")
    viewer.add_image(image[:, ::-1], name="third")
    assert _checked(train.context) == ["other", "third"]  # "nuclei" is annotated
    train.context.item(1).setCheckState(Qt.CheckState.Unchecked)
    viewer.add_image(image.T, name="fourth")  # a new image is checked; "third" stays out
    assert train.context_layers() == []  # not adapting: no context
    train.adapt_norm.setChecked(True)
    assert not train.context.isHidden()
    assert train.context_layers() == ["other", "fourth"]
    assert train.config().adapt_norm is True


def test_the_form_is_made_from_the_config_and_reaches_it(setup):
    import dataclasses

    from qtpy.QtWidgets import QComboBox

    from napari_instseg.core.configs import knob_ranges
    from napari_instseg.core.finetune import FinetuneConfig
    from napari_instseg.core.predict import DEVICES

    _, train = setup
    given = {"patch_size": 32, "batch_size": 2, "device": "cpu"}  # by the fixture
    assert train.config() == FinetuneConfig(**given)  # every other field at its default
    for field in dataclasses.fields(FinetuneConfig):
        editor = train.form.editor(field.name)  # one editor per field, none retyped
        meta = knob_ranges(FinetuneConfig)[field.name]
        if "min" in meta:
            assert (editor.minimum(), editor.maximum()) == (meta["min"], meta["max"]), field
    device = train.form.editor("device")
    assert isinstance(device, QComboBox)
    assert [device.itemText(i) for i in range(device.count())] == list(DEVICES)
    assert train.form.editor("tune").count() == 3
    folded = train.form.advanced  # the rarely needed fields, folded away
    assert not folded.isExpanded() and folded.content().isAncestorOf(train.form.editor("seed"))
    train.form.editor("replay").setValue(0.0)
    train.form.editor("tune").setCurrentText("first_block")
    train.form.editor("lr").setValue(2e-4)
    config = train.config()
    assert (config.replay, config.tune, config.lr) == (0.0, "first_block", 2e-4)


def test_the_lists_follow_renamed_layers(setup):
    viewer, train = setup
    image = viewer.layers["nuclei"].data
    viewer.add_image(image[::-1], name="other")
    viewer.add_image(image[:, ::-1], name="third")
    train.adapt_norm.setChecked(True)
    train.context.item(1).setCheckState(Qt.CheckState.Unchecked)  # "third"
    viewer.layers["third"].name = "third, renamed"
    viewer.layers["other"].name = "other, renamed"
    viewer.layers["nuclei annotations"].name = "my objects"
    assert _checked(train.context) == ["other, renamed", "third, renamed"]
    assert train.context_layers() == ["other, renamed"]  # still unchecked under its new name
    assert train.checked_layers() == ["my objects"]
    viewer.layers["nuclei"].name = "nuclei, renamed"  # the annotation stays paired with it
    assert train.context_layers() == ["other, renamed"]
    [annotated] = train._collect(train._cards["spoco-tiny"])
    assert annotated.name == "nuclei, renamed"


def test_result_compares_with_the_base_model_and_applies_to_all_images(setup, qtbot):
    from napari_instseg.core.checkpoint import read_card
    from napari_instseg.core.jobs import run
    from napari_instseg.core.pipeline import load_model, segment_image

    viewer, train = setup
    image = np.asarray(viewer.layers["nuclei"].data)
    viewer.add_image(image[::-1], name="other")
    train.adapt_norm.setChecked(True)
    train.form.editor("iterations").setValue(10)
    assert not train.apply_button.isEnabled()
    train.start()
    qtbot.waitUntil(lambda: train.result is not None, timeout=120_000)
    result = train.result
    assert result.model_path is not None, train.status.text()
    card = read_card(result.model_path)
    assert card.training["finetune_config"]["adapt_norm"] is True
    # 7 objects (one is under the painted corner) at 0.2 hold out 1: too few to judge by
    text = train.status.text()
    assert "held-out AP cannot be judged (1 object held out; annotate at least 25)" in text
    images = [c["image"] for c in result.comparison["images"]]
    assert images == ["nuclei", "other"]
    assert "compared with spoco-tiny, where you did not annotate (2 images)" in text
    for c in result.comparison["images"]:
        assert f"{c['image']}: objects {c['objects_parent']} -&gt; {c['objects_tuned']}" in text
    for warning in result.warnings:
        assert html.escape(warning, quote=False) in text
    assert train.apply_button.isEnabled()

    train.apply_button.click()
    assert train.stop_button.isEnabled() and not train.start_button.isEnabled()
    qtbot.waitUntil(lambda: train.job is None, timeout=120_000)
    parent = load_model("spoco-tiny")
    for name in ("nuclei", "other"):
        layer = viewer.layers[f"{name} [spoco-tiny-finetuned]"]
        stats = train.applied[name]
        assert layer.data.shape == (96, 96)
        assert len(np.unique(layer.data)) - 1 == stats["objects_tuned"]
        parent_labels = run(segment_image(parent, np.asarray(viewer.layers[name].data))).labels
        assert stats["objects_parent"] == len(np.unique(parent_labels)) - 1
        line = f"{name}: {stats['objects_tuned']} objects (parent had {stats['objects_parent']}"
        assert line in train.status.text()
    assert train.apply_button.isEnabled() and train.start_button.isEnabled()

    viewer.add_image(image.T, name="third")
    train.apply_button.click()
    train.stop()
    qtbot.waitUntil(lambda: train.job is None, timeout=60_000)
    assert "stopped; no layer was changed" in train.status.text()
    assert "third [spoco-tiny-finetuned]" not in viewer.layers
