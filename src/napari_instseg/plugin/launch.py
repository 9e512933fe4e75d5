"""Open napari with a sample (or files) and the Segment widget docked: the GUI main job."""

from __future__ import annotations

#: The shipped model that fits each bundled sample best.
SAMPLE_MODELS = {
    "nuclei2d_dsb_stardist": "embedseg-nuclei",
    "phase2d_usiigaci_set1_crop512": "embedseg-cells",
}


def open_viewer(paths=(), *, sample: str | None = "nuclei2d_dsb_stardist", block: bool = True):
    """Start napari, load ``paths`` (or the bundled ``sample``), dock the Segment widget.

    Returns the viewer and the widget (when ``block`` is False, for scripts and tests).
    """
    import napari

    viewer = napari.Viewer(title="napari-instseg")
    if paths:
        for path in paths:
            viewer.open(path, plugin=None)
    elif sample:
        viewer.open_sample("napari-instseg", sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    preferred = SAMPLE_MODELS.get(sample or "")
    if preferred and widget.model_box.findText(preferred) >= 0:
        widget.model_box.setCurrentText(preferred)
    if block:
        napari.run()
    return viewer, widget
