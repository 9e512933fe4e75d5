"""Tests for napari_instseg.core.configs: dict / string conversion of config dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import pytest

from napari_instseg.core.configs import (
    config_from_dict,
    config_to_dict,
    knob_ranges,
    knob_types,
    parse_assignments,
    replace_config,
)


@dataclass(frozen=True)
class ToyConfig:
    threshold: Annotated[float, {"min": 0.0, "max": 1.0, "step": 0.05}] = 0.5
    size: Annotated[int, {"min": 1}, "not a dict"] = 3
    name: str = "x"
    flag: bool = False
    shape: tuple[int, ...] = (1, 2)


def test_knob_types_strip_annotated():
    assert knob_types(ToyConfig) == {
        "threshold": float,
        "size": int,
        "name": str,
        "flag": bool,
        "shape": tuple[int, ...],
    }


def test_knob_ranges_read_annotated_dicts():
    ranges = knob_ranges(ToyConfig)
    assert ranges["threshold"] == {"min": 0.0, "max": 1.0, "step": 0.05}
    assert ranges["size"] == {"min": 1}  # non-dict metadata ignored
    assert ranges["name"] == {} and ranges["flag"] == {}


def test_knob_ranges_of_a_real_backend():
    from napari_instseg.core.assembly.watershed import WatershedConfig

    ranges = knob_ranges(WatershedConfig)
    assert ranges["fg_threshold"]["min"] == 0.0
    assert ranges["fg_threshold"]["max"] == 1.0
    assert "tooltip" in ranges["min_size"]


def test_config_from_dict_converts_strings_to_field_types():
    cfg = config_from_dict(
        ToyConfig, {"threshold": "0.25", "size": "7", "name": 5, "flag": "yes", "shape": [3, 4]}
    )
    assert cfg == ToyConfig(threshold=0.25, size=7, name="5", flag=True, shape=(3, 4))
    assert isinstance(cfg.threshold, float) and isinstance(cfg.size, int)


@pytest.mark.parametrize(
    ("text", "value"),
    [("true", True), ("1", True), ("On", True), (" false ", False), ("0", False), ("no", False)],
)
def test_bool_strings(text, value):
    assert config_from_dict(ToyConfig, {"flag": text}).flag is value


def test_whole_float_is_accepted_for_int():
    assert config_from_dict(ToyConfig, {"size": 4.0}).size == 4


def test_none_and_empty_give_defaults():
    assert config_from_dict(ToyConfig, None) == ToyConfig()
    assert config_from_dict(ToyConfig, {}) == ToyConfig()


def test_unknown_keys_are_refused_with_the_known_ones_listed():
    with pytest.raises(ValueError, match="threshhold") as info:
        config_from_dict(ToyConfig, {"threshhold": 0.1})
    assert "threshold" in str(info.value) and "ToyConfig" in str(info.value)


def test_unknown_keys_are_dropped_when_not_strict():
    assert config_from_dict(ToyConfig, {"size": 2, "other": 1}, strict=False) == ToyConfig(size=2)


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"threshold": "abc"}, "threshold: expected float"),
        ({"size": "3.5"}, "size: expected int"),
        ({"size": 3.5}, "size: expected a whole number"),
        ({"flag": "maybe"}, "flag: expected true/false"),
        ({"size": None}, "size: expected int"),
    ],
)
def test_bad_values_are_refused(values, match):
    with pytest.raises(ValueError, match=match):
        config_from_dict(ToyConfig, values)


def test_config_to_dict_round_trip():
    cfg = ToyConfig(threshold=0.1, size=9, name="n", flag=True, shape=(5,))
    d = config_to_dict(cfg)
    assert d == {"threshold": 0.1, "size": 9, "name": "n", "flag": True, "shape": [5]}
    assert config_from_dict(ToyConfig, d) == cfg


def test_replace_config_converts_and_checks():
    cfg = replace_config(ToyConfig(), {"size": "11"})
    assert cfg == ToyConfig(size=11)
    with pytest.raises(ValueError, match="unknown option"):
        replace_config(ToyConfig(), {"nope": 1})


def test_parse_assignments():
    assert parse_assignments(["a=1", " b = x y ", "c=", "d=e=f"]) == {
        "a": "1",
        "b": "x y",
        "c": "",
        "d": "e=f",
    }
    assert parse_assignments(None) == {}
    assert parse_assignments([]) == {}


@pytest.mark.parametrize("item", ["novalue", "=3", "  =3", ""])
def test_parse_assignments_refuses_malformed_items(item):
    with pytest.raises(ValueError, match="KNOB=VALUE"):
        parse_assignments([item])


def test_parse_then_build():
    values = parse_assignments(["threshold=0.75", "size=2", "flag=off"])
    assert config_from_dict(ToyConfig, values) == ToyConfig(threshold=0.75, size=2, flag=False)


@pytest.mark.parametrize("text", ["1,3,9", "[1, 3, 9]", "(1,3,9)", " 1 , 3 , 9 "])
def test_tuple_fields_parse_command_line_text(text):
    assert config_from_dict(ToyConfig, {"shape": text}).shape == (1, 3, 9)


def test_tuple_items_are_checked():
    with pytest.raises(ValueError, match="shape"):
        config_from_dict(ToyConfig, {"shape": "1,x"})


@pytest.mark.parametrize("value", ["2.0", "-1", "nan", "inf"])
def test_values_outside_the_declared_range_are_refused(value):
    from napari_instseg.core.assembly import get_backend

    config_type = get_backend("seeds").config_type
    with pytest.raises(ValueError, match="fg_threshold"):
        config_from_dict(config_type, {"fg_threshold": value})
    assert config_from_dict(config_type, {"fg_threshold": "0.5"}).fg_threshold == 0.5


def test_text_values_outside_their_declared_choices_are_refused():
    from napari_instseg.core.finetune import FinetuneConfig

    with pytest.raises(ValueError, match="tune = 'decoder' is not one of all, encoder, first"):
        config_from_dict(FinetuneConfig, {"tune": "decoder"})
    assert config_from_dict(FinetuneConfig, {"tune": "first_block"}).tune == "first_block"
