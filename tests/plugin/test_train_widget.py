"""The Fine-tune widget: a short run in a worker, responsive viewer, Stop, Resume, picker."""

from __future__ import annotations

import time

import numpy as np
import pytest
from qtpy.QtCore import QTimer

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
    train.patch.setValue(32)
    train.batch.setValue(2)
    train.device.setCurrentText("cpu")
    return viewer, train


def test_lists_sparse_models_and_annotations(setup):
    viewer, train = setup
    models = [train.model_box.itemText(i) for i in range(train.model_box.count())]
    assert "spoco-tiny" in models and "spoco-nuclei" in models
    assert "threeclass-nuclei" not in models  # its loss needs dense labels
    assert train.checked_layers() == ["nuclei annotations"]
    assert train.name.text() == "spoco-tiny-finetuned"


def test_short_run_keeps_viewer_responsive_and_publishes_model(setup, qtbot):
    viewer, train = setup
    train.iterations.setValue(10)
    train.preview_every.setValue(5)
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
    train.iterations.setValue(100_000)
    train.start()
    qtbot.waitUntil(lambda: train.progress.value() >= 2, timeout=60_000)
    train.stop()
    qtbot.waitUntil(lambda: train.result is not None, timeout=60_000)
    first = train.result
    assert first.run.stopped and first.model_path is not None
    assert train.resume_button.isEnabled() and train.start_button.isEnabled()
    done = first.run.iterations_done
    train.result = None
    train.iterations.setValue(done + 5)
    train.resume_button.click()
    qtbot.waitUntil(lambda: train.result is not None, timeout=60_000)
    assert train.result.run.iterations_done == done + 5 and not train.result.run.stopped


def test_refuses_to_start_without_annotations(setup):
    viewer, train = setup
    viewer.layers.remove("nuclei annotations")
    train.start()
    assert train.job is None and "no annotations" in train.status.text()
