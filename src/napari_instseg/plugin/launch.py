"""Open napari with a sample (or files) and the Segment widget docked: the GUI main job."""

from __future__ import annotations


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
    if block:
        napari.run()
    return viewer, widget
