"""Take the user guide's screenshots from a real (headless) napari session.

    python docs/make_screenshots.py        # writes docs/images/*.png

Without a display it starts Xvfb through pyvirtualdisplay.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

OUT = Path(__file__).resolve().parent / "images"


def wait(app, condition, timeout=120.0):
    t0 = time.perf_counter()
    while not condition():
        app.processEvents()
        time.sleep(0.005)
        if time.perf_counter() - t0 > timeout:
            raise TimeoutError("the widget did not answer in time")


def shoot() -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    OUT.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True, title="napari-instseg")
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-instseg", "nuclei2d_dsb_stardist")
    viewer.layers["nuclei 2D (DSB2018) ground truth"].visible = False
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    app = QApplication.instance()
    widget.model_box.setCurrentText("embedseg-nuclei")
    widget.image_box.setCurrentText("nuclei 2D (DSB2018)")
    for _ in range(20):
        app.processEvents()
    viewer.reset_view()
    viewer.screenshot(str(OUT / "01_sample_and_widget.png"), canvas_only=False)
    widget.run()
    wait(app, lambda: not widget.job.running)
    wait(app, lambda: widget.tune.shown_generation == widget.tune.generation)
    for _ in range(20):
        app.processEvents()
    viewer.screenshot(str(OUT / "02_segmented.png"), canvas_only=False)
    widget.tune.form.editor("min_size").setValue(150)
    wait(app, lambda: widget.tune.shown_generation == widget.tune.generation)
    for _ in range(20):
        app.processEvents()
    viewer.screenshot(str(OUT / "03_tuned.png"), canvas_only=False)
    viewer.close()


def settle(app, n=30):
    for _ in range(n):
        app.processEvents()
        time.sleep(0.01)


def shoot_loop(project: Path, export_dir: Path) -> None:
    """Annotate -> fine-tune -> export on the real DSB sample, one screenshot per widget."""
    import napari
    import numpy as np
    from qtpy.QtWidgets import QApplication

    from napari_instseg.core.data.sparse import BACKGROUND_LABEL

    os.environ["NAPARI_INSTSEG_PROJECT"] = str(project)
    app = QApplication.instance()
    viewer = napari.Viewer(show=True, title="napari-instseg")
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-instseg", "nuclei2d_dsb_stardist")
    image_name, truth_name = "nuclei 2D (DSB2018)", "nuclei 2D (DSB2018) ground truth"
    truth = np.asarray(viewer.layers[truth_name].data)
    viewer.layers[truth_name].visible = False
    _, segment = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    segment.model_box.setCurrentText("spoco-nuclei")
    segment.image_box.setCurrentText(image_name)
    segment.run()
    wait(app, lambda: not segment.job.running)

    # The "user" corrects ten objects: copied from the ground truth layer as if from a
    # prediction, then background painted around them.
    _, annotate = viewer.window.add_plugin_dock_widget("napari-instseg", "Annotate")
    annotate.image_box.setCurrentText(image_name)
    annotate.refresh_layers()
    annotate.prediction_box.setCurrentText(truth_name)
    layer = annotate.annotate()
    ids = np.random.default_rng(0).choice(np.unique(truth)[1:], size=10, replace=False)
    annotate.copy_from_prediction([int(i) for i in ids])
    from scipy import ndimage as ndi

    data = np.array(layer.data)
    near = ndi.binary_dilation(data > 0, iterations=8) & (data == 0) & (truth == 0)
    data[near] = BACKGROUND_LABEL
    layer.data = data
    annotate.flush()
    viewer.layers[f"{image_name} [spoco-nuclei]"].visible = False
    settle(app)
    viewer.screenshot(str(OUT / "04_annotate.png"), canvas_only=False)

    _, train = viewer.window.add_plugin_dock_widget("napari-instseg", "Fine-tune")
    train.model_box.setCurrentText("spoco-nuclei")
    train.name.setText("spoco-nuclei-docs")
    train.iterations.setValue(100)
    train.preview_every.setValue(25)
    train.start()
    wait(app, lambda: train.result is not None, timeout=900)
    layer.visible = False
    settle(app)
    viewer.screenshot(str(OUT / "05_finetune.png"), canvas_only=False)

    _, export = viewer.window.add_plugin_dock_widget("napari-instseg", "Export")
    export.refresh_layers()
    export.labels_box.setCurrentText(f"{image_name} [fine-tune preview]")
    export.image_box.setCurrentText(image_name)
    export.set_format("ome-zarr")
    export.set_path(export_dir / "nuclei.ome.zarr")
    export.overwrite.setChecked(True)
    export.export()
    wait(app, lambda: "saved" in export.status.text().lower() or "wrote" in export.status.text())
    settle(app)
    viewer.screenshot(str(OUT / "06_export.png"), canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000), color_depth=24)
        display.start()
    import tempfile

    try:
        shoot()
        with tempfile.TemporaryDirectory() as tmp:
            shoot_loop(Path(tmp) / "project.zarr", Path(tmp))
    finally:
        if display is not None:
            display.stop()
