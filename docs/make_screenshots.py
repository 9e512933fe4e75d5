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


if __name__ == "__main__":
    display = None
    if not os.environ.get("DISPLAY"):
        from pyvirtualdisplay import Display

        display = Display(visible=False, size=(1600, 1000), color_depth=24)
        display.start()
    try:
        shoot()
    finally:
        if display is not None:
            display.stop()
