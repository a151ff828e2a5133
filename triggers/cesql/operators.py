"""The arithmetic and comparison operators on already-cast operands (CESQL v1 §3.4).

Integers are signed 32-bit. ``/`` truncates toward zero and ``%`` takes the sign of the
dividend; both give 0 and a MathError for a zero divisor. A result outside 32 bits (e.g.
``2147483647 + 1``, ``-(-2147483648)``, ``-2147483648 / -1``) saturates to the nearest bound and
comes with a MathError, the rule the spec gives for ``ABS(-2147483648)``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from triggers.cesql.errors import MathError
from triggers.cesql.signals import Failed
from triggers.cesql.types import INT_MAX, INT_MIN


def checked(result: int) -> int:
    """``result`` if it fits in 32 bits; otherwise Failed with the saturated value."""
    if INT_MIN <= result <= INT_MAX:
        return result
    bound = INT_MAX if result > 0 else INT_MIN
    raise Failed(bound, MathError(f"integer overflow: {result} is outside the signed 32-bit range"))


def add(x: int, y: int) -> int:
    return checked(x + y)


def subtract(x: int, y: int) -> int:
    return checked(x - y)


def multiply(x: int, y: int) -> int:
    return checked(x * y)


def divide(x: int, y: int) -> int:
    if y == 0:
        raise Failed(0, MathError(f"division by zero: {x} / 0"))
    quotient = abs(x) // abs(y)
    return checked(quotient if (x < 0) == (y < 0) else -quotient)


def modulo(x: int, y: int) -> int:
    if y == 0:
        raise Failed(0, MathError(f"modulo by zero: {x} % 0"))
    remainder = abs(x) % abs(y)
    return -remainder if x < 0 else remainder


def negate(x: int) -> int:
    return checked(-x)


ARITHMETIC: dict[str, Callable[[int, int], int]] = {
    "+": add,
    "-": subtract,
    "*": multiply,
    "/": divide,
    "%": modulo,
}

ORDERING: dict[str, Callable[[int, int], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

EQUALITY: dict[str, bool] = {"=": False, "!=": True, "<>": True}
"""Equality operators, mapped to whether they are negated."""
