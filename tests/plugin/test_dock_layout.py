"""All four widgets docked at once fit a 1920x1080 screen: each scrolls instead of growing
the window, and every button can be scrolled into view unclipped."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QPoint, QRect
from qtpy.QtWidgets import QAbstractButton, QComboBox, QGroupBox

from napari_instseg.core.samples import load_sample
from napari_instseg.plugin._layout import MIN_DOCK_HEIGHT

pytestmark = pytest.mark.gui

SCREEN = (1920, 1080)
#: What a 1080p desktop leaves a window: its title bar and a task bar take the rest.
USABLE_HEIGHT = 1000


def in_view(dock, target) -> bool:
    """Whether ``target`` (inside ``dock``'s body) is shown whole in the dock's viewport, or
    fills the viewport when it is taller than it."""
    viewport = dock.viewport()
    rect = QRect(target.mapTo(viewport, QPoint(0, 0)), target.size())
    if rect.height() > viewport.height():
        return rect.top() <= 0 and rect.bottom() >= viewport.height() - 1
    return viewport.rect().contains(rect)


def test_all_four_widgets_docked_fit_a_1080p_screen(make_napari_viewer, qtbot):
    viewer = make_napari_viewer(show=True)
    image, _ = load_sample("nuclei2d_dsb_stardist")
    viewer.add_image(image, name="nuclei")
    window = viewer.window._qt_window
    window.resize(*SCREEN)
    docked = {}
    for name in ("Segment", "Annotate", "Fine-tune", "Export"):
        _, docked[name] = viewer.window.add_plugin_dock_widget("napari-instseg", name)
        qtbot.wait(10)
    qtbot.wait(50)

    assert window.minimumSizeHint().height() <= USABLE_HEIGHT
    assert window.height() <= SCREEN[1]
    segment, train = docked["Segment"], docked["Fine-tune"]
    must_reach = {
        "Segment": [
            segment.run_button,
            segment.cancel_button,
            segment.tune.reset_button,
            segment.tune.copy_button,
        ],
        "Annotate": [docked["Annotate"].annotate_button, docked["Annotate"].copy_button],
        "Fine-tune": [train.start_button, train.stop_button, train.plot, train.apply_button],
        "Export": [docked["Export"].export_button],
    }
    for name, dock in docked.items():
        assert dock.isVisible() and dock.height() >= MIN_DOCK_HEIGHT, name
        # the body fits the dock's width: no sideways scrolling, nothing squeezed
        assert dock.body.width() <= dock.viewport().width(), name
        for target in must_reach[name]:
            dock.show_widget(target)
            qtbot.wait(1)
            assert in_view(dock, target), (name, target.objectName() or target)
        for control in dock.body.findChildren((QAbstractButton, QComboBox)):
            if control.isVisible():  # text not cut short
                assert control.width() >= control.minimumSizeHint().width(), (name, control)
        for box in dock.body.findChildren(QGroupBox):
            title = box.fontMetrics().horizontalAdvance(box.title())
            assert title <= box.width(), (name, box.title())
