"""Open napari with a sample (or files) and the Segment widget docked: the GUI main job."""

from __future__ import annotations

#: The shipped model that fits each bundled sample best.
SAMPLE_MODELS = {
    "nuclei2d_dsb_stardist": "embedseg-nuclei",
    "phase2d_usiigaci_set1_crop512": "embedseg-cells",
}


def display_problem(timeout: float = 60.0) -> str | None:
    """Why napari cannot open a window on this machine, or None when it can.

    Qt aborts the whole process (SIGABRT, "Reinstalling the application may fix this
    problem") when no platform plugin starts, e.g. without a display; a child process tries
    first so that the caller can say so in one line instead.
    """
    import subprocess
    import sys

    code = "from qtpy.QtWidgets import QApplication; QApplication([])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None  # slow to start is not broken: let napari try
    if done.returncode == 0:
        return None
    lines = [line.strip().removeprefix("WARNING:").strip() for line in done.stderr.splitlines()]
    lines = [line for line in lines if line]
    for key in ("could not connect to display", "could not load the qt platform plugin"):
        for line in lines:
            if key in line.lower():
                return line
    return lines[0] if lines else f"Qt failed to start (exit code {done.returncode})"


def open_viewer(
    paths=(),
    *,
    sample: str | None = "nuclei2d_dsb_stardist",
    model: str | None = None,
    block: bool = True,
):
    """Start napari, load ``paths`` (or, with none, the bundled ``sample``), dock the Segment
    widget and fit the view to the image.

    The widget's model is ``model`` when given (an ``InputError`` names the installed ones
    when it is not one of them), else the one that fits the sample, else the widget's own
    choice for the image's modality. Returns the viewer and the widget (when ``block`` is
    False, for scripts and tests).
    """
    if model is not None:
        from napari_instseg.core.arrays import InputError
        from napari_instseg.core.zoo import list_models

        names = [card.name for card, _ in list_models()]
        if model not in names:
            raise InputError(f"no model named {model!r}; installed: {', '.join(names)}")
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-instseg")
    if paths:
        for path in paths:
            viewer.open(path, plugin=None)
        sample = None
    elif sample:
        viewer.open_sample("napari-instseg", sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-instseg", "Segment")
    preferred = model or SAMPLE_MODELS.get(sample or "")
    if preferred and widget.model_box.findText(preferred) >= 0:
        widget.model_box.setCurrentText(preferred)
    # the dock took width from the canvas: fit the image to what is left of it
    QApplication.processEvents()
    viewer.reset_view()
    if block:
        napari.run()
    return viewer, widget
