"""Building blocks of compiled expressions: each node becomes a closure ``fn(attributes)``.

``attributes`` is the event's attribute mapping (values ``str``, ``int`` or ``bool``). A closure
returns the node's value, or raises :class:`~triggers.cesql.signals.Fault`. Operators run a fast
path that assumes operands already have (or cast cleanly to) the needed types; when a cast or the
operation itself raises :class:`~triggers.cesql.signals.Failed`, the operator re-runs as its
*slow path*, which casts with error collection and raises a Fault with the errors and the
operator's value. Evaluation is pure, so re-running operands is safe; it only happens on errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from triggers.cesql.ast import Attribute, Node, Value
from triggers.cesql.errors import CesqlError, MissingAttributeError
from triggers.cesql.signals import Failed, Fault
from triggers.cesql.types import ANY, CASTS, ValueType, cast_collecting, to_str

Env = Mapping[str, Any]
Fn = Callable[[Env], Value]


@dataclass(frozen=True, slots=True, kw_only=True)
class Compiled:
    """A compiled node: its closure and what is known about it before evaluation."""

    node: Node
    fn: Fn
    type: ValueType
    """``bool``, ``int``, ``str``, or ANY when only evaluation tells."""
    reads_event: bool
    """Whether the value depends on the event (else it may be computed once)."""
    constant: bool = False
    """The value is known and error-free: ``fn`` returns ``value`` whatever the event."""
    value: Value = False


def constant(node: Node, value: Value) -> Compiled:
    return Compiled(
        node=node, fn=lambda _: value, type=value.__class__, reads_event=False, constant=True, value=value
    )


def attribute(node: Attribute) -> Compiled:
    """The attribute's value as it is; a missing attribute faults (zero value: false)."""
    name = node.name

    def read(attributes: Env) -> Value:
        value = attributes.get(name)
        cls = value.__class__
        if cls is str or cls is int or cls is bool:
            return value  # type: ignore[return-value]
        if value is None:
            raise Fault([MissingAttributeError(name)], False, node)
        return to_str(value)  # a binding kept another JSON type: CESQL sees its string form

    return Compiled(node=node, fn=read, type=ANY, reads_event=True)


def typed(operand: Compiled, tag: ValueType) -> Fn:
    """``operand``'s closure returning values of type ``tag``; a failing cast raises Failed."""
    if tag is ANY or operand.type is tag:
        return operand.fn
    cast = CASTS[tag]
    if operand.constant:
        try:
            value = cast(operand.value)
        except Failed as failed:
            stuck, error = failed.value, failed.error

            def failing(_: Env) -> Value:
                raise Failed(stuck, error)

            return failing
        return lambda _: value
    if isinstance(operand.node, Attribute):
        return _typed_attribute(operand.node, tag)
    fn = operand.fn
    if operand.type is ANY:

        def dynamic(attributes: Env) -> Value:
            value = fn(attributes)
            return value if value.__class__ is tag else cast(value)

        return dynamic
    return lambda attributes: cast(fn(attributes))


def _typed_attribute(node: Attribute, tag: ValueType) -> Fn:
    """Attribute read and cast fused into one closure (the hot path of most filters)."""
    name, cast = node.name, CASTS[tag]

    def read(attributes: Env) -> Value:
        value = attributes.get(name)
        if value.__class__ is tag:
            return value  # type: ignore[return-value]
        if value is None:
            raise Fault([MissingAttributeError(name)], False, node)
        return cast(value)

    return read


def slow_path(node: Node, operands: Sequence[tuple[Fn, ValueType]], compute: Callable[..., Value]) -> Fn:
    """Evaluate the raw operands left to right (a Fault among them propagates as it is), then
    cast each to its type collecting errors, then compute; raise a Fault if anything failed."""

    def slow(attributes: Env) -> Value:
        raw = [fn(attributes) for fn, _ in operands]
        errors: list[CesqlError] = []
        values = [cast_collecting(value, tag, errors) for value, (_, tag) in zip(raw, operands, strict=True)]
        try:
            value = compute(*values)
        except Failed as failed:
            errors.append(failed.error)
            value = failed.value
        if errors:
            raise Fault(errors, value, node)
        return value

    return slow


def operation(
    node: Node,
    operands: Sequence[tuple[Compiled, ValueType]],
    compute: Callable[..., Value],
    returns: ValueType,
) -> Compiled:
    """An operator or function applying ``compute`` to operands cast to the given types."""
    slow = slow_path(node, [(c.fn, tag) for c, tag in operands], compute)
    fns = [typed(c, tag) for c, tag in operands]
    fn: Fn
    if len(fns) == 1:
        (x,) = fns

        def unary(attributes: Env) -> Value:
            try:
                return compute(x(attributes))
            except Failed:
                return slow(attributes)

        fn = unary
    elif len(fns) == 2:
        x, y = fns

        def binary(attributes: Env) -> Value:
            try:
                return compute(x(attributes), y(attributes))
            except Failed:
                return slow(attributes)

        fn = binary
    else:

        def nary(attributes: Env) -> Value:
            try:
                return compute(*[f(attributes) for f in fns])
            except Failed:
                return slow(attributes)

        fn = nary
    reads = any(c.reads_event for c, _ in operands)
    return Compiled(node=node, fn=fn, type=returns, reads_event=reads)
