"""A compiled CESQL expression and the result of evaluating it on one event."""

from __future__ import annotations

from dataclasses import dataclass

from broker.event import Event
from triggers.cesql.ast import Node, Value
from triggers.cesql.compiler import compile_tree
from triggers.cesql.errors import CesqlError, CesqlParseError
from triggers.cesql.parser import parse
from triggers.cesql.signals import Fault
from triggers.cesql.types import zero


@dataclass(frozen=True, slots=True)
class Result:
    """The value of an expression (Boolean, Integer or String) and the errors met computing it.

    With errors, ``value`` is what the spec prescribes: the erring operator's own value when it
    is the whole expression (``5 / 0`` → 0, ``NOT 10`` → true), else the zero value of the
    expression's type (``true AND (missing = '')`` → false).
    """

    value: Value
    errors: tuple[CesqlError, ...]

    @property
    def passes(self) -> bool:
        """Whether an event passes this expression used as a filter: exactly ``true``, no error."""
        return self.value is True and not self.errors


_TRUE = Result(True, ())
_FALSE = Result(False, ())


class Expression:
    """A parsed and compiled CESQL expression; immutable, safe to share between tasks/threads."""

    __slots__ = ("_fn", "_zero", "source", "tree")

    def __init__(self, source: str, tree: Node) -> None:
        compiled = compile_tree(tree)
        self.source = source
        self.tree = tree
        """The syntax tree (see :mod:`triggers.cesql.ast`), e.g. to derive index hints."""
        self._fn = compiled.fn
        self._zero = zero(compiled.type)

    def evaluate(self, event: Event) -> Result:
        """Evaluate on ``event``'s attributes (never its data). Never raises."""
        try:
            value = self._fn(event.attributes)
        except Fault as fault:
            return Result(fault.value if fault.node is self.tree else self._zero, tuple(fault.errors))
        # Results are immutable: the two most common ones are shared instead of built per event.
        if value is True:
            return _TRUE
        if value is False:
            return _FALSE
        return Result(value, ())

    def verdict(self, event: Event) -> tuple[bool, tuple[CesqlError, ...]]:
        """Filter verdict without building a Result: ``(value is true and no error, errors)``."""
        try:
            return self._fn(event.attributes) is True, ()
        except Fault as fault:
            return False, tuple(fault.errors)

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def compile(expression: str) -> Expression:
    """Parse and compile ``expression``. Raises :class:`CesqlParseError` (a ``ValueError``)."""
    try:
        return Expression(expression, parse(expression))
    except RecursionError:
        raise CesqlParseError(0, "expression nested too deeply") from None
