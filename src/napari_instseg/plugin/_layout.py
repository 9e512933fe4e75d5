"""Dock widgets that scroll instead of growing the window.

napari stacks dock widgets in one column and the main window's minimum height is the sum of
theirs: four tall forms pushed it to ~2000 px, off a 1080p screen, with buttons below its
edge. Each dock widget is therefore a scroll area: its minimum height is a few lines, and
what does not fit scrolls. When several are docked in one column they share its height in
proportion to what they hold (up to :data:`MAX_PREFERRED_HEIGHT` each).
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt, QTimer
from qtpy.QtWidgets import QDockWidget, QFrame, QMainWindow, QScrollArea, QWidget

#: Height (pixels) a dock widget asks for at least: a few rows of its form.
MIN_DOCK_HEIGHT = 120
#: Height (pixels) a dock widget prefers at most, so that docked together they share the
#: screen instead of the first one taking it all.
MAX_PREFERRED_HEIGHT = 480


class ScrollingDock(QScrollArea):
    """A dock widget whose content lives on :attr:`body` inside a vertical scroll area.

    Subclasses build their layout on ``self.body`` (``QVBoxLayout(self.body)``). The content
    keeps its full width (a horizontal scroll bar appears only when the dock is narrower than
    the content's minimum) and scrolls vertically.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.body = QWidget()
        self.body.setObjectName("dock_body")
        self.setWidget(self.body)
        self.setMinimumHeight(MIN_DOCK_HEIGHT)
        self._shared = False

    def sizeHint(self) -> QSize:
        """The content's size, but no taller than :data:`MAX_PREFERRED_HEIGHT`; the width
        leaves room for the vertical scroll bar."""
        content = self.body.sizeHint()
        bar = self.verticalScrollBar().sizeHint().width()
        return QSize(content.width() + bar, min(content.height(), MAX_PREFERRED_HEIGHT))

    def show_widget(self, widget: QWidget) -> None:
        """Scroll so that ``widget`` (a child of :attr:`body`) is in view."""
        self.ensureWidgetVisible(widget, 0, 0)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        if not self._shared:
            self._shared = True
            # once docked and laid out: a newly docked widget otherwise squeezes the earlier
            # ones of its column down to their minimum
            QTimer.singleShot(0, self.share_column)

    def share_column(self) -> None:
        """Give the scrolling dock widgets stacked in this one's column heights in
        proportion to their preferred heights (Qt keeps minimums and the window's size)."""
        dock = self.parentWidget()
        window = dock.parentWidget() if isinstance(dock, QDockWidget) else None
        if not isinstance(window, QMainWindow) or dock.isFloating():
            return
        area = window.dockWidgetArea(dock)
        column = [
            other
            for other in window.findChildren(QDockWidget)
            if isinstance(other.widget(), ScrollingDock)
            and other.isVisible()
            and not other.isFloating()
            and window.dockWidgetArea(other) == area
            and not window.tabifiedDockWidgets(other)
        ]
        if len(column) > 1:
            heights = [other.widget().sizeHint().height() for other in column]
            window.resizeDocks(column, heights, Qt.Orientation.Vertical)
