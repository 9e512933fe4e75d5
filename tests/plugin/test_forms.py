"""Knob forms: one editor per knob, the rarely needed ones folded under "advanced"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from napari_instseg.core.assembly import get_backend
from napari_instseg.core.configs import knob_types
from napari_instseg.plugin._forms import KnobForm, advanced_knobs
from napari_instseg.plugin.segment_widget import describe_route

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


def test_route_line_says_whose_setting_a_forced_route_was():
    report = {"modality": "fluorescence", "route": "detection", "reason": "forced"}
    same = describe_route(report, {"route": "detection"}, {"route": "detection"})
    assert same == "fluorescence image: detection route (the model's default route)"
    mine = describe_route({**report, "route": "flows"}, {"route": "flows"}, {"route": "auto"})
    assert mine == "fluorescence image: flows route (chosen with the route knob)"
    chosen = {**report, "reason": "no flows fallback for fluorescence"}
    assert "(no flows fallback for fluorescence)" in describe_route(chosen, {}, {})
