"""`napari-instseg view` where no window can open: one line and exit 2, not Qt's SIGABRT
("Reinstalling the application may fix this problem") that kills the process."""

from __future__ import annotations

import pytest
from _faults import one_line, run

from napari_instseg.plugin.launch import display_problem

pytestmark = pytest.mark.slow


def _no_display(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)


def test_view_without_a_display_is_one_line_and_exit_2(capsys, monkeypatch):
    _no_display(monkeypatch)
    rc, _, err = run(capsys, "view")
    assert rc == 2
    line = one_line(err, "view")
    assert "cannot open a window" in line and "display" in line
    assert "xvfb-run" in line  # what to do


def test_a_display_that_works_is_no_problem():
    # the test session's own display (pytest-xvfb): Qt starts there, so nothing to report
    assert display_problem() is None
