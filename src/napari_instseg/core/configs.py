"""Frozen config dataclasses: conversion from and to plain dicts and ``KNOB=VALUE`` strings."""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

from .arrays import InputError


def _base_type(tp: Any) -> Any:
    if typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def knob_types(config_type: type) -> dict[str, Any]:
    """Field name -> plain Python type of a config dataclass (``Annotated`` stripped)."""
    hints = typing.get_type_hints(config_type, include_extras=True)
    return {f.name: _base_type(hints[f.name]) for f in dataclasses.fields(config_type)}


def knob_ranges(config_type: type) -> dict[str, dict]:
    """Field name -> the GUI metadata given in ``Annotated[..., {...}]`` (empty if none)."""
    hints = typing.get_type_hints(config_type, include_extras=True)
    out = {}
    for f in dataclasses.fields(config_type):
        tp = hints[f.name]
        meta = {}
        if typing.get_origin(tp) is typing.Annotated:
            for extra in typing.get_args(tp)[1:]:
                if isinstance(extra, dict):
                    meta.update(extra)
        out[f.name] = meta
    return out


def check_ranges(config) -> None:
    """Refuse (``InputError``, a ``ValueError``) any value of ``config`` outside its declared
    ``min``/``max``, or a text value that is not one of its declared ``choices``."""
    for name, meta in knob_ranges(type(config)).items():
        value = getattr(config, name)
        choices = meta.get("choices")
        if choices is not None and isinstance(value, str) and value not in choices:
            raise InputError(f"{name} = {value!r} is not one of {', '.join(map(str, choices))}")
        low, high = meta.get("min"), meta.get("max")
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if (low is not None or high is not None) and not math.isfinite(value):
            raise InputError(f"{name} = {value} is not a number; choose one in [{low}, {high}]")
        if (low is not None and value < low) or (high is not None and value > high):
            raise InputError(
                f"{name} = {value} is outside its range [{low}, {high}]; choose a value inside it"
            )


def _coerce(value: Any, tp: Any, name: str) -> Any:
    if tp is bool:
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise InputError(f"{name}: expected true/false, got {value!r}")
        return bool(value)
    if tp in (int, float, str):
        try:
            out = tp(value)
        except (TypeError, ValueError):
            raise InputError(f"{name}: expected {tp.__name__}, got {value!r}") from None
        if tp is int and isinstance(value, float) and value != out:
            raise InputError(f"{name}: expected a whole number, got {value!r}")
        return out
    if typing.get_origin(tp) is tuple:
        if isinstance(value, str):  # from the command line: "1,3,9" or "[1, 3, 9]"
            value = [v for v in value.strip().strip("[]()").split(",") if v.strip()]
        if isinstance(value, list | tuple):
            args = typing.get_args(tp)
            item = args[0] if args and args[0] in (int, float, str, bool) else None
            return tuple(_coerce(v, item, name) if item else v for v in value)
    return value


def config_from_dict(config_type: type, values: dict[str, Any] | None, *, strict=True):
    """Build ``config_type`` from a dict, converting values to the declared field types.

    Unknown keys raise ``InputError`` (a ``ValueError``) when ``strict`` (a typo in a knob name
    must not pass silently), and are dropped otherwise. Values outside their declared range,
    NaN or infinity where a range is declared, and values the config's own checks refuse
    raise ``InputError`` (:func:`check_ranges`).
    """
    values = dict(values or {})
    types = knob_types(config_type)
    unknown = sorted(set(values) - set(types))
    if unknown and strict:
        raise InputError(
            f"unknown option(s) {unknown} for {config_type.__name__}; known: {sorted(types)}"
        )
    kwargs = {k: _coerce(v, types[k], k) for k, v in values.items() if k in types}
    try:
        config = config_type(**kwargs)
    except ValueError as err:  # a config's own checks (``__post_init__``) refuse a value given
        raise InputError(str(err)) from err
    check_ranges(config)
    return config


def config_to_dict(config) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass."""

    def plain(v):
        return [plain(x) for x in v] if isinstance(v, tuple | list) else v

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}


def parse_assignments(items: list[str] | None) -> dict[str, str]:
    """Parse ``["KNOB=VALUE", ...]`` into a dict of strings, refusing malformed items."""
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected KNOB=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def replace_config(config, values: dict[str, Any]):
    """A copy of ``config`` with some fields replaced, values converted to the field types."""
    merged = {**dataclasses.asdict(config), **values}
    return config_from_dict(type(config), merged)
