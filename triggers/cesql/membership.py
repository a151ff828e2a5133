"""``x [NOT] IN (y1, y2, …)`` (CESQL v1 §3.4.5).

Each element is compared with ``=`` after casting it to the type of ``x`` (the left operand
drives, unlike ``=`` where the right one does). Every element is evaluated, so an element naming
a missing attribute always faults, whether or not an earlier element matched. An element that
cannot be cast compares as its zero value and adds a CastError.

When every element is a constant (the usual case), the cast sets are built once per possible
type of ``x``, and evaluation is one hash lookup.
"""

from __future__ import annotations

from collections.abc import Sequence

from triggers.cesql.ast import In, Value
from triggers.cesql.closures import Compiled, Env, Fn
from triggers.cesql.errors import CesqlError
from triggers.cesql.signals import Fault
from triggers.cesql.types import ANY, cast_collecting

_Table = tuple[frozenset[Value], tuple[CesqlError, ...]]


def membership(node: In, operand: Compiled, items: Sequence[Compiled]) -> Compiled:
    reads = operand.reads_event or any(i.reads_event for i in items)
    if all(i.constant for i in items):
        fn = _constant_set(node, operand, [i.value for i in items])
    else:
        fn = _evaluated_set(node, operand.fn, [i.fn for i in items])
    return Compiled(node=node, fn=fn, type=bool, reads_event=reads)


def _table(values: Sequence[Value], tag: type) -> _Table:
    errors: list[CesqlError] = []
    members = frozenset(cast_collecting(v, tag, errors) for v in values)
    return members, tuple(errors)


def _constant_set(node: In, operand: Compiled, values: Sequence[Value]) -> Fn:
    negated, read = node.negated, operand.fn
    tables: dict[type, _Table] = {tag: _table(values, tag) for tag in (bool, int, str)}
    if operand.type is not ANY and not tables[operand.type][1]:
        members = tables[operand.type][0]
        return lambda attributes: (read(attributes) in members) != negated

    def lookup(attributes: Env) -> bool:
        value = read(attributes)
        members, errors = tables[value.__class__]
        found = (value in members) != negated
        if errors:
            raise Fault(list(errors), found, node)
        return found

    return lookup


def _evaluated_set(node: In, read: Fn, items: Sequence[Fn]) -> Fn:
    negated = node.negated

    def evaluate(attributes: Env) -> bool:
        value = read(attributes)
        elements = [item(attributes) for item in items]
        errors: list[CesqlError] = []
        tag = value.__class__
        found = False
        for element in elements:
            if cast_collecting(element, tag, errors) == value:
                found = True
        result = found != negated
        if errors:
            raise Fault(errors, result, node)
        return result

    return evaluate
