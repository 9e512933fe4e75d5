"""Knob forms: one editor per knob, the rarely needed ones folded under "advanced"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.configs import knob_types
from napari_instseg.core.modality import route_text
from napari_instseg.plugin._forms import KnobForm, advanced_knobs

pytestmark = pytest.mark.gui


@dataclass(frozen=True)
class _Marked:
    threshold: Annotated[float, {"min": 0.0, "max": 1.0}] = 0.5
    rarely: Annotated[int, {"min": 0, "max": 10, "advanced": True}] = 3


def test_allcell_back_end_shows_a_few_knobs_and_folds_the_rest(qtbot):
    config = get_backend("detection_watershed").config_type
    form = KnobForm(config)
    qtbot.addWidget(form)
    form.show()
    folded = advanced_knobs(config)
    assert len(knob_types(config)) == 17 and len(folded) == 11
    assert form.advanced is not None and not form.advanced.isExpanded()
    assert form.advanced.text() == "advanced (11 knobs)"
    content = form.advanced.content()
    shown = [name for name in knob_types(config) if not content.isAncestorOf(form.editor(name))]
    assert shown == ["modality", "conf_threshold", "fg_threshold", "t1", "min_size", "route"]
    assert content.height() == 0  # folded
    assert set(form.values()) == set(knob_types(config))  # folded knobs still count

    seen = []
    form.changed.connect(seen.append)
    form.advanced.expand(animate=False)
    qtbot.wait(1)
    assert content.height() >= 11 * form.editor("t2").height()
    form.editor("t2").setValue(2.0)
    assert seen and seen[-1]["t2"] == 2.0
    form.set_values({"hole_size": 99})
    assert form.values()["hole_size"] == 99


def test_a_config_can_mark_its_own_advanced_knobs(qtbot):
    form = KnobForm(_Marked)
    qtbot.addWidget(form)
    assert advanced_knobs(_Marked) == ["rarely"]
    assert form.advanced.text() == "advanced (1 knob)"
    assert KnobForm(get_backend("watershed").config_type).advanced is None  # all open


@dataclass(frozen=True)
class _Presented:
    rate: Annotated[
        float, {"min": 1e-6, "max": 0.1, "decimals": 6, "widget_type": "FloatSpinBox"}
    ] = 1e-3
    every: Annotated[
        int, {"min": 0, "max": 100, "widget_type": "SpinBox", "min_text": "off", "label": "each"}
    ] = 5
    where: Annotated[str, {"offered": ("here", "there")}] = "here"


def test_fields_choose_their_editor_label_and_offered_values(qtbot):
    from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox

    form = KnobForm(_Presented)
    qtbot.addWidget(form)
    rate, every, where = (form.editor(name) for name in ("rate", "every", "where"))
    assert isinstance(rate, QDoubleSpinBox) and rate.decimals() == 6
    assert isinstance(every, QSpinBox)
    every.setValue(0)
    assert every.text() == "off"
    rows = form.findChild(QFormLayout)
    assert rows.labelForField(every).text() == "each"
    assert isinstance(where, QComboBox) and where.count() == 2
    rate.setValue(2e-6)
    assert form.config() == _Presented(rate=2e-6, every=0)
    form.set_values({"where": "cuda:1"})  # offered values are a list, not a limit
    assert form.config().where == "cuda:1"


def test_route_line_says_whose_setting_a_forced_route_was():
    report = {"modality": "fluorescence", "route": "detection", "reason": "forced"}
    same = route_text(report, {"route": "detection"}, {"route": "detection"})
    assert same == "fluorescence image: detection route (the model's default route)"
    mine = route_text({**report, "route": "flows"}, {"route": "flows"}, {"route": "auto"})
    assert mine == "fluorescence image: flows route (chosen with the route knob)"
    unknown = route_text(report)  # nobody said whose setting it was: no "forced"
    assert unknown == "fluorescence image: detection route (set by the route knob)"
    chosen = {**report, "reason": "no flows fallback for fluorescence"}
    assert "(no flows fallback for fluorescence)" in route_text(chosen, {}, {})
