"""Typed, range-checked config sections.

Every config section a user sets (trainer, device, a model, a distiller, a dataset) is a dataclass;
:func:`build_dataclass` turns the composed values into one, checking before any work is done that
every key exists, every value has the field's type and lies in the range its metadata allows.
Ranges are declared next to the field: ``epochs: int = field(default=100, metadata=ge(1))``.
A field that declares none gets the range its name conventionally means (:data:`CONVENTIONS`: a
layer count, width or size is >= 1, a dropout rate lies in [0, 1), a loss weight is >= 0, a
temperature or learning rate is > 0), so every model, distiller and dataset, including the ones a
user adds, refuses nonsense values without listing them field by field.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from kdrec.errors import ConfigError


def ge(lo: float) -> dict:
    return {"ge": lo}


def gt(lo: float) -> dict:
    return {"gt": lo}


def between(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False) -> dict:
    return {"gt" if lo_open else "ge": lo, "lt" if hi_open else "le": hi}


def one_of(*choices: Any) -> dict:
    return {"choices": tuple(choices)}


# (field name pattern, range) for numeric fields (and lists of numbers) that declare no range of
# their own. Metadata a field declares always wins over these.
CONVENTIONS: tuple[tuple[re.Pattern, dict], ...] = tuple((re.compile(p), m) for p, m in (
    (r"(^|_)dropout$", between(0, 1, hi_open=True)),
    (r"^(depth|k|low_rank|vocab_size|max_items|min_items|num_(heads|experts|fields|rows|items|users|clusters)"
     r"|\w+_(layers|dim|heads|experts|batch_size|epochs|chunk|budget|posting)|(\w+_)?hidden)$", ge(1)),
    (r"(^|_)weight$", ge(0)),
    (r"^(temperature|T_start|T_end|lr|\w+_lr|reduction_ratio)$", gt(0)),
    (r"^(noise|k1|zipf_exponent|sharpness|hard_below|drop_below|\w+_patience)$", ge(0)),
    (r"(_fraction|_rate)$", between(0, 1, lo_open=True, hi_open=True)),
))


def conventional_range(name: str) -> dict:
    for pattern, meta in CONVENTIONS:
        if pattern.search(name):
            return meta
    return {}


_RANGE_TEXT = {"ge": ">= {}", "gt": "> {}", "le": "<= {}", "lt": "< {}"}


def allowed_text(meta: dict) -> str:
    if "choices" in meta:
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    return " and ".join(_RANGE_TEXT[k].format(v) for k, v in meta.items() if k in _RANGE_TEXT)


class _Bad(Exception):
    pass


def _coerce(value: Any, hint: Any) -> Any:
    """``value`` as type ``hint`` or :class:`_Bad` (no lossy conversions: 'abc' is no int)."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a)
            except _Bad:
                continue
        raise _Bad
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise _Bad
    if hint is int:
        if isinstance(value, bool):
            raise _Bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _Bad
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Bad
        if not math.isfinite(value):
            raise _Bad
        return float(value)
    if hint is str:
        if isinstance(value, str):
            return value
        raise _Bad
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _Bad
        args = typing.get_args(hint)
        item = args[0] if args else Any
        return [_coerce(v, item) for v in value]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise _Bad
        return dict(value)
    return value  # nested dataclasses and other types are checked by their own builders


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _name(where: str, key: str) -> str:
    """``teacher (dnn)`` + ``embed_dim`` -> ``teacher.embed_dim (dnn)``."""
    section, _, label = where.partition(" (")
    return f"{section}.{key}" + (f" ({label}" if label else "")


def check_value(where: str, key: str, value: Any, hint: Any, meta: dict) -> Any:
    name = _name(where, key)
    try:
        value = _coerce(value, hint)
    except _Bad:
        raise ConfigError(f"{name}: {value!r} is not a valid {_type_name(hint)}") from None
    if value is None:
        return value
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{name}: {value!r} is not allowed; allowed: {allowed_text(meta)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not _in_range(float(value), meta):
            raise ConfigError(f"{name}: {value!r} is out of range; allowed: {allowed_text(meta)}")
    elif isinstance(value, list) and value and any(k in meta for k in _RANGE_TEXT):
        for v in value:  # a range on a list field applies to each element (e.g. layer widths)
            if isinstance(v, (int, float)) and not _in_range(float(v), meta):
                raise ConfigError(f"{name}: {value!r} has {v!r} out of range; "
                                  f"allowed elements: {allowed_text(meta)}")
    return value


def _in_range(v: float, meta: dict) -> bool:
    return ((("ge" not in meta) or v >= meta["ge"]) and (("gt" not in meta) or v > meta["gt"])
            and (("le" not in meta) or v <= meta["le"]) and (("lt" not in meta) or v < meta["lt"]))


def drop_retired(cls: type, values: dict[str, Any], where: str) -> dict[str, Any]:
    """Keys removed from a config after measurement, declared on the class as ``RETIRED = {key:
    (kept value, why)}``: a stored config (an old run directory, a checkpoint) that sets one to the
    value kdrec kept still loads, the key dropped; any other value gets one error saying what was
    removed and why."""
    retired = getattr(cls, "RETIRED", {})
    for k in [k for k in values if k in retired]:
        kept, why = retired[k]
        if values[k] != kept:
            raise ConfigError(f"{where}: {k}={values[k]!r} was removed ({why}); only the former "
                              f"default {k}={kept!r} remains and is now always on: drop the key")
    return {k: v for k, v in values.items() if k not in retired}


def build_dataclass(cls: type, values: dict[str, Any], where: str):
    """``cls(**values)`` after checking every key, type and range; errors name key, value and
    what is allowed."""
    values = drop_retired(cls, values, where)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    checked = {k: check_value(where, k, v, hints.get(k, Any), dict(fields[k].metadata) or conventional_range(k))
               for k, v in values.items()}
    return cls(**checked)
