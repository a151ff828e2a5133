"""The two exceptions compiled expressions use internally to report errors without slowing the
error-free path (a ``try`` costs nothing in CPython 3.11 until something is raised).

- :class:`Failed`: one operation (a cast, an operator, a function) hit an error but still has a
  value (CESQL operators are total). The operator that owns the operation records the error,
  uses the value, and finishes its own computation.
- :class:`Fault`: an operator finished with errors. It propagates to the top: every enclosing
  operator is abandoned and the expression's value becomes the zero value of its return type,
  unless the faulting operator *is* the whole expression, whose own value is then kept. This
  gives the TCK results: ``NOT 10`` is ``true`` (cast error inside NOT), ``true AND (1 != 1 / 0)``
  is ``false`` (math error below AND), ``ABS(-2147483648)`` is ``2147483647``.

An operator evaluates its operands left to right before casting them, so an operand's fault
ends the evaluation before the operator's own casts (``'a' + missing`` reports only the missing
attribute). AND and OR are the exception, as short-circuit needs the left operand as a Boolean
before the right one is evaluated (``'yes' OR missing`` reports the cast error, then the missing
attribute).

Neither ever leaves :meth:`triggers.cesql.Expression.evaluate`.
"""

from __future__ import annotations

from triggers.cesql.ast import Node, Value
from triggers.cesql.errors import CesqlError


class Failed(Exception):
    """An operation's error together with the value it yields anyway."""

    def __init__(self, value: Value, error: CesqlError) -> None:
        super().__init__(str(error))
        self.value = value
        self.error = error


class Fault(Exception):
    """Errors raised out of the operator ``node``, whose own result was ``value``."""

    def __init__(self, errors: list[CesqlError], value: Value, node: Node) -> None:
        super().__init__()  # the message is built only if someone prints it
        self.errors = errors
        self.value = value
        self.node = node

    def __str__(self) -> str:
        return "; ".join(str(e) for e in self.errors)
