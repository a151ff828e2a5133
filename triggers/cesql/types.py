"""CESQL types and casts (CESQL v1 §3.1, §3.7).

The Python classes ``bool``, ``int`` and ``str`` are the type tags of Boolean, Integer and
String; :data:`ANY` marks a value whose type is known only at evaluation time (an attribute).
Type checks use ``value.__class__ is int`` because ``bool`` is a subclass of ``int``.

Casts (the same for implicit casts and for ``INT``/``STRING``):

- Integer → String: base 10. Boolean → String: ``"true"``/``"false"``.
- String → Integer: ``[+-]?[0-9]+`` within 32 bits, else 0 and a CastError.
- Boolean → Integer: 1/0.
- String → Boolean: ``"true"``/``"false"`` in any case, else false and a CastError.
- Integer → Boolean: only explicitly, ``BOOL(x)`` is ``x != 0``. An *implicit* Integer → Boolean
  cast (``NOT 10``, ``1 AND TRUE``) is a CastError with value false, as the TCK requires.

A failed cast raises :class:`~triggers.cesql.signals.Failed` carrying the zero value; the
operator that asked for the cast carries on with the zero value and reports the error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from triggers.cesql.ast import Value
from triggers.cesql.errors import CastError, CesqlError
from triggers.cesql.signals import Failed

ANY: Final = object
"""Type tag of a value whose type is only known at evaluation time."""

ValueType = type
"""``bool``, ``int``, ``str`` or :data:`ANY`."""

INT_MIN: Final = -(2**31)
INT_MAX: Final = 2**31 - 1

_INTEGER = re.compile(r"[+-]?[0-9]+")
_NAMES: Final = {bool: "Boolean", int: "Integer", str: "String", object: "Any"}


def type_name(tag: ValueType) -> str:
    return _NAMES.get(tag, tag.__name__)


def zero(tag: ValueType) -> Value:
    """The zero value of a type; Boolean ``false`` when the type is unknown (spec §3.2)."""
    if tag is int:
        return 0
    if tag is str:
        return ""
    return False


def to_str(value: Value) -> str:
    """Canonical string form; never fails."""
    cls = value.__class__
    if cls is str:
        return value  # type: ignore[return-value]
    if cls is bool:
        return "true" if value else "false"
    return str(value)


def to_int(value: Value) -> int:
    """Integer value of ``value``; raises Failed (value 0)."""
    cls = value.__class__
    if cls is int:
        return value  # type: ignore[return-value]
    if cls is bool:
        return 1 if value else 0
    if cls is str and _INTEGER.fullmatch(value):  # type: ignore[arg-type]
        number = int(value)
        if INT_MIN <= number <= INT_MAX:
            return number
    raise Failed(0, CastError(f"cannot cast {_show(value)} to Integer"))


def to_bool(value: Value) -> bool:
    """Boolean value of ``value`` for an implicit cast; raises Failed (value false)."""
    cls = value.__class__
    if cls is bool:
        return value  # type: ignore[return-value]
    if cls is str:
        lowered = value.lower()  # type: ignore[union-attr]
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    raise Failed(False, CastError(f"cannot cast {_show(value)} to Boolean"))


def to_bool_explicit(value: Value) -> bool:
    """``BOOL(x)``: like :func:`to_bool`, plus Integer → ``x != 0``."""
    if value.__class__ is int:
        return value != 0
    return to_bool(value)


def is_int(value: Value) -> bool:
    """``IS_INT(x)``: an Integer, or a String that casts to one."""
    if value.__class__ is bool:
        return False
    try:
        to_int(value)
    except Failed:
        return False
    return True


def is_bool(value: Value) -> bool:
    """``IS_BOOL(x)``: a Boolean, or a String that casts to one."""
    try:
        to_bool(value)
    except Failed:
        return False
    return True


CASTS: Final[dict[ValueType, Callable[[Value], Value]]] = {bool: to_bool, int: to_int, str: to_str}
"""Implicit cast to each concrete type."""


def cast_collecting(value: Value, tag: ValueType, errors: list[CesqlError]) -> Value:
    """``value`` cast to ``tag`` (unchanged for :data:`ANY`); a failure appends its error and
    gives the zero value."""
    if tag is ANY or value.__class__ is tag:
        return value
    try:
        return CASTS[tag](value)
    except Failed as failed:
        errors.append(failed.error)
        return failed.value


def _show(value: Value) -> str:
    text = repr(value) if value.__class__ is str else to_str(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{type_name(value.__class__)} {text}"
