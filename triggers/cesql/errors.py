"""The CESQL error kinds (CESQL v1 §3.3), one class each, all under :class:`CesqlError`.

Only :class:`CesqlParseError` is ever raised to callers (by :func:`triggers.cesql.compile`).
Evaluation never raises: every operator and function is total, and the errors met on the way
come back in :attr:`triggers.cesql.Result.errors` beside the value.

::

    WeirError
    └── CesqlError                  kind "generic"
        ├── CesqlParseError         kind "parse" (also a ValueError)
        ├── MathError               kind "math": x / 0, x % 0, 32-bit overflow
        ├── CastError               kind "cast": an operand or argument cannot take the needed type
        ├── MissingFunctionError    kind "missingFunction": no function of that name and arity
        ├── FunctionEvaluationError kind "functionEvaluation": e.g. LEFT(x, -1)
        └── MissingAttributeError   kind "missingAttribute": the event lacks the attribute
"""

from __future__ import annotations

from broker.errors import WeirError


class CesqlError(WeirError):
    """An error met while parsing or evaluating a CESQL expression; ``kind`` names the TCK kind."""

    kind: str = "generic"


class CesqlParseError(CesqlError, ValueError):
    """The expression is not valid CESQL. ``position`` is the 0-based character offset where
    parsing failed (the expression's length for an unexpected end)."""

    kind = "parse"

    def __init__(self, position: int, reason: str) -> None:
        super().__init__(f"position {position}: {reason}")
        self.position = position
        self.reason = reason


class MathError(CesqlError):
    """Division or modulo by zero, or a result outside the signed 32-bit range."""

    kind = "math"


class CastError(CesqlError):
    """A value could not be converted to the type an operator or function needs."""

    kind = "cast"


class MissingFunctionError(CesqlError):
    """No built-in function has this name and arity."""

    kind = "missingFunction"


class FunctionEvaluationError(CesqlError):
    """A function was called with arguments outside its domain."""

    kind = "functionEvaluation"


class MissingAttributeError(CesqlError):
    """The expression reads an attribute the event does not have."""

    kind = "missingAttribute"

    def __init__(self, name: str) -> None:
        super().__init__(f"missing attribute {name!r}")
        self.name = name
