"""The built-in CESQL functions (CESQL v1 §3.5 plus the casts the TCK uses).

Functions are dispatched by upper-cased name and arity, once, at compile time. A name/arity
pair with no definition compiles to a call that evaluates to ``false`` with a
MissingFunctionError (spec §3.5), e.g. ``CONCAT_WS()``.

Arguments are cast to the parameter types before the call (``ANY`` parameters take the value as
it is). An implementation signals a domain error by raising
:class:`~triggers.cesql.signals.Failed` with the value the spec prescribes.

=========================  ===============================================================
``LENGTH(s)``              characters (code points) in ``s``
``CONCAT(s…)``             concatenation of zero or more strings
``CONCAT_WS(sep, s…)``     ``s…`` joined by ``sep`` (the separator alone is required)
``LOWER(s)``/``UPPER(s)``  Unicode case mapping
``TRIM(s)``                ``s`` without leading/trailing Unicode White_Space characters
``LEFT(s, n)``             first ``n`` characters; ``n < 0`` → ``s`` + FunctionEvaluationError
``RIGHT(s, n)``            last ``n`` characters; ``n < 0`` → ``s`` + FunctionEvaluationError
``SUBSTRING(s, p[, n])``   from 1-based position ``p`` (negative counts from the end, 0 → ``""``),
                           at most ``n`` characters; ``|p| > LENGTH(s)`` or ``n < 0`` →
                           ``""`` + FunctionEvaluationError
``ABS(i)``                 absolute value; ``ABS(-2147483648)`` → 2147483647 + MathError
``INT(x)``/``STRING(x)``   explicit casts (same rules as implicit ones)
``BOOL(x)``                explicit cast; also Integer → ``x != 0``
``IS_INT(x)``/``IS_BOOL``  whether ``x`` is, or casts without error to, that type
=========================  ===============================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from triggers.cesql.ast import Value
from triggers.cesql.errors import FunctionEvaluationError, MathError
from triggers.cesql.signals import Failed
from triggers.cesql.types import (
    ANY,
    INT_MAX,
    INT_MIN,
    ValueType,
    is_bool,
    is_int,
    to_bool_explicit,
    to_int,
    to_str,
)

# Unicode White_Space (not str.isspace, which also strips the control characters U+001C..U+001F).
_WHITE_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Function:
    """One overload: fixed ``params``, then any number of ``variadic`` arguments if set."""

    name: str
    params: tuple[ValueType, ...]
    returns: ValueType
    impl: Callable[..., Value]
    variadic: ValueType | None = None

    def accepts(self, arity: int) -> bool:
        fixed = len(self.params)
        return arity == fixed or (self.variadic is not None and arity > fixed)

    def param(self, index: int) -> ValueType:
        """Type of the argument at ``index``."""
        if index < len(self.params):
            return self.params[index]
        assert self.variadic is not None
        return self.variadic


def _left(text: str, count: int) -> str:
    if count < 0:
        raise Failed(text, FunctionEvaluationError(f"LEFT: negative length {count}"))
    return text[:count]


def _right(text: str, count: int) -> str:
    if count < 0:
        raise Failed(text, FunctionEvaluationError(f"RIGHT: negative length {count}"))
    return text[max(len(text) - count, 0) :]


def _substring(text: str, pos: int, count: int | None = None) -> str:
    size = len(text)
    if pos > size or pos < -size:
        raise Failed(
            "", FunctionEvaluationError(f"SUBSTRING: position {pos} outside a string of length {size}")
        )
    if count is not None and count < 0:
        raise Failed("", FunctionEvaluationError(f"SUBSTRING: negative length {count}"))
    if pos == 0:
        return ""
    start = pos - 1 if pos > 0 else size + pos
    return text[start:] if count is None else text[start : start + count]


def _abs(number: int) -> int:
    if number == INT_MIN:
        raise Failed(INT_MAX, MathError("ABS(-2147483648) overflows 32 bits"))
    return abs(number)


def _concat_ws(separator: str, *parts: str) -> str:
    return separator.join(parts)


BUILTINS: tuple[Function, ...] = (
    Function(name="LENGTH", params=(str,), returns=int, impl=len),
    Function(name="CONCAT", params=(), variadic=str, returns=str, impl=lambda *parts: "".join(parts)),
    Function(name="CONCAT_WS", params=(str,), variadic=str, returns=str, impl=_concat_ws),
    Function(name="LOWER", params=(str,), returns=str, impl=str.lower),
    Function(name="UPPER", params=(str,), returns=str, impl=str.upper),
    Function(name="TRIM", params=(str,), returns=str, impl=lambda text: text.strip(_WHITE_SPACE)),
    Function(name="LEFT", params=(str, int), returns=str, impl=_left),
    Function(name="RIGHT", params=(str, int), returns=str, impl=_right),
    Function(name="SUBSTRING", params=(str, int), returns=str, impl=_substring),
    Function(name="SUBSTRING", params=(str, int, int), returns=str, impl=_substring),
    Function(name="ABS", params=(int,), returns=int, impl=_abs),
    Function(name="INT", params=(ANY,), returns=int, impl=to_int),
    Function(name="BOOL", params=(ANY,), returns=bool, impl=to_bool_explicit),
    Function(name="STRING", params=(ANY,), returns=str, impl=to_str),
    Function(name="IS_INT", params=(ANY,), returns=bool, impl=is_int),
    Function(name="IS_BOOL", params=(ANY,), returns=bool, impl=is_bool),
)


def resolve(name: str, arity: int) -> Function | None:
    """The built-in called ``name`` (upper case) taking ``arity`` arguments, if any."""
    for function in BUILTINS:
        if function.name == name and function.accepts(arity):
            return function
    return None
