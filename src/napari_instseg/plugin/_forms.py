"""Qt forms generated from core config dataclasses (ranges and tooltips from ``Annotated``).

The metadata a field may declare in ``Annotated[type, {...}]`` (plain data, in magicgui's
words where it has one): ``min``, ``max``, ``step``, ``choices`` (the only values allowed),
``tooltip``, ``label`` (the row's text; default: the field's name), ``widget_type``
(``"SpinBox"`` / ``"FloatSpinBox"`` for a spin box, ``"Slider"`` / ``"FloatSlider"`` for a
slider; default: a slider, a spin box for wide integer ranges), ``decimals``, ``min_text``
(what a spin box shows at its minimum, e.g. "off"), ``offered`` (the values a text field
offers in a list without refusing others) and ``advanced`` (folded away).
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLineEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible, QLabeledDoubleSlider, QLabeledSlider

from napari_instseg.core.configs import config_from_dict, knob_ranges, knob_types

# Integer knobs with a wider range than this get a spin box: a slider over 0..100000 is useless.
_SLIDER_MAX_INT_RANGE = 2000


def advanced_knobs(config_type: type) -> list[str]:
    """The knobs of ``config_type`` that a form shows folded, in field order."""
    return [name for name, meta in knob_ranges(config_type).items() if meta.get("advanced")]


class KnobForm(QWidget):
    """One editor per field of a config dataclass; ``changed`` fires with the new values.

    The :func:`advanced_knobs` are in a folded section (:attr:`advanced`, None when there
    are none) below the others."""

    changed = Signal(dict)

    def __init__(self, config_type: type, values: dict[str, Any] | None = None, parent=None):
        super().__init__(parent)
        self.config_type = config_type
        self._types = knob_types(config_type)
        self._ranges = knob_ranges(config_type)
        self._editors: dict[str, QWidget] = {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        basic = QFormLayout()
        basic.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(basic)
        folded = advanced_knobs(config_type)
        self.advanced: QCollapsible | None = None
        advanced = QFormLayout()
        if folded:
            noun = "knob" if len(folded) == 1 else "knobs"
            self.advanced = QCollapsible(f"advanced ({len(folded)} {noun})")
            self.advanced.setDuration(0)  # a slide for each click only slows tuning down
            self.advanced.setObjectName("advanced_knobs")
            box = QWidget()
            box.setLayout(advanced)
            advanced.setContentsMargins(0, 0, 0, 0)
            self.advanced.addWidget(box)
            layout.addWidget(self.advanced)
        defaults = config_type()
        for name, tp in self._types.items():
            editor = self._make_editor(name, tp, self._ranges.get(name, {}))
            tip = self._ranges.get(name, {}).get("tooltip", "")
            editor.setToolTip(tip)
            editor.setObjectName(f"knob_{name}")
            self._editors[name] = editor
            rows = advanced if name in folded else basic
            label = self._ranges.get(name, {}).get("label", name.replace("_", " "))
            rows.addRow(label, editor)
            self._set_editor(name, getattr(defaults, name))
        if values:
            self.set_values(values)

    def _make_editor(self, name: str, tp: type, meta: dict) -> QWidget:
        if tp is bool:
            box = QCheckBox()
            box.toggled.connect(self._emit)
            return box
        kind = meta.get("widget_type", "")
        if tp is float and kind == "FloatSpinBox":
            spin = QDoubleSpinBox()
            spin.setDecimals(int(meta.get("decimals", 3)))
            spin.setRange(float(meta.get("min", 0.0)), float(meta.get("max", 1.0)))
            spin.setSingleStep(float(meta.get("step", 0.01)))
            spin.setSpecialValueText(meta.get("min_text", ""))
            spin.valueChanged.connect(self._emit)
            return spin
        if tp is float:
            slider = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
            slider.setRange(float(meta.get("min", 0.0)), float(meta.get("max", 1.0)))
            slider.setSingleStep(float(meta.get("step", 0.01)))
            slider.setDecimals(3)
            slider.valueChanged.connect(self._emit)
            return slider
        if tp is int:
            lo, hi = int(meta.get("min", 0)), int(meta.get("max", 100))
            wide = hi - lo > _SLIDER_MAX_INT_RANGE and kind != "Slider"
            if wide or kind == "SpinBox":
                spin = QSpinBox()
                spin.setRange(lo, hi)
                spin.setSingleStep(int(meta.get("step", 1)))
                spin.setSpecialValueText(meta.get("min_text", ""))
                spin.valueChanged.connect(self._emit)
                return spin
            slider = QLabeledSlider(Qt.Orientation.Horizontal)
            slider.setRange(lo, hi)
            slider.valueChanged.connect(self._emit)
            return slider
        if meta.get("choices") or meta.get("offered"):
            combo = QComboBox()
            combo.addItems([str(c) for c in meta.get("choices") or meta["offered"]])
            combo.currentTextChanged.connect(self._emit)
            return combo
        edit = QLineEdit()
        edit.editingFinished.connect(self._emit)
        return edit

    def _set_editor(self, name: str, value: Any) -> None:
        editor = self._editors[name]
        if isinstance(editor, QCheckBox):
            editor.setChecked(bool(value))
        elif isinstance(editor, QLineEdit):
            editor.setText(str(value))
        elif isinstance(editor, QComboBox):
            if editor.findText(str(value)) < 0:  # a value given elsewhere, e.g. "cuda:1"
                editor.addItem(str(value))
            editor.setCurrentText(str(value))
        else:
            editor.setValue(value)

    def editor(self, name: str) -> QWidget:
        return self._editors[name]

    def values(self) -> dict[str, Any]:
        out = {}
        for name, editor in self._editors.items():
            tp = self._types[name]
            if isinstance(editor, QCheckBox):
                out[name] = editor.isChecked()
            elif isinstance(editor, QLineEdit):
                out[name] = editor.text()
            elif isinstance(editor, QComboBox):
                out[name] = editor.currentText()
            else:
                value = editor.value()
                out[name] = round(float(value), 6) if tp is float else int(value)
        return out

    def config(self):
        """The config the form shows (its ranges checked, as everywhere else)."""
        return config_from_dict(self.config_type, self.values())

    def set_values(self, values: dict[str, Any]) -> None:
        """Show ``values`` without emitting ``changed`` for each field."""
        self.blockSignals(True)
        try:
            for name, value in values.items():
                if name in self._editors:
                    editor = self._editors[name]
                    editor.blockSignals(True)
                    self._set_editor(name, value)
                    editor.blockSignals(False)
        finally:
            self.blockSignals(False)

    def _emit(self, *_):
        self.changed.emit(self.values())
