"""The live-tuning panel after its dock is closed: a late assembly result is dropped."""

from qtpy.QtCore import QCoreApplication, QEvent


def test_an_assembly_that_ends_after_the_panel_is_gone_is_dropped(qtbot):
    from napari_instseg.plugin.tune_widget import TunePanel

    panel = TunePanel()
    assert panel._alive[0]
    panel.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert not panel._alive[0]  # the C++ side is gone: touching status would raise
    panel._done(panel.generation, None)  # dropped, no RuntimeError
    panel._failed(panel.generation, RuntimeError("late"))
