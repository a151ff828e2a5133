"""Syntax tree → one nested closure per expression, built once when a Trigger loads.

Static types pick the cheapest closure for each node (no cast when an operand already has the
needed type; attribute read and cast fused). Sub-expressions that do not read the event and
evaluate without error are folded into constants, so ``x = -(5)`` or ``y IN ('a', 'b')`` cost
nothing extra per event.
"""

from __future__ import annotations

from collections.abc import Callable

from triggers.cesql.ast import Attribute, Binary, Call, Exists, In, Like, Literal, Node, Unary, Value
from triggers.cesql.closures import (
    Compiled,
    Env,
    Fn,
    attribute,
    constant,
    operation,
    typed,
)
from triggers.cesql.errors import CesqlError, CesqlParseError, MissingAttributeError, MissingFunctionError
from triggers.cesql.functions import resolve
from triggers.cesql.like import compile_like, literal_prefix
from triggers.cesql.logic import chain
from triggers.cesql.membership import membership
from triggers.cesql.operators import ARITHMETIC, EQUALITY, ORDERING, negate
from triggers.cesql.parser import MAX_DEPTH
from triggers.cesql.signals import Failed, Fault
from triggers.cesql.types import ANY, CASTS, cast_collecting, to_str

_NO_ATTRIBUTES: Env = {}


def compile_tree(tree: Node) -> Compiled:
    """The compiled root. Raises CesqlParseError if the tree is nested too deeply to evaluate."""
    return _compile(tree, 0)


def _compile(node: Node, depth: int) -> Compiled:
    if depth > MAX_DEPTH:
        raise CesqlParseError(node.position, f"expression nested more than {MAX_DEPTH} levels deep")
    compiled = _build(node, depth + 1)
    if compiled.constant or compiled.reads_event:
        return compiled
    try:
        value = compiled.fn(_NO_ATTRIBUTES)
    except Fault:
        return compiled  # the error is part of every evaluation; keep reporting it
    return constant(node, value)


def _build(node: Node, depth: int) -> Compiled:
    if isinstance(node, Literal):
        return constant(node, node.value)
    if isinstance(node, Attribute):
        return attribute(node)
    if isinstance(node, Exists):
        name = node.name
        return Compiled(node=node, fn=lambda attributes: name in attributes, type=bool, reads_event=True)
    if isinstance(node, Unary):
        operand = _compile(node.operand, depth)
        if node.op == "NOT":
            return operation(node, [(operand, bool)], _not, bool)
        return operation(node, [(operand, int)], negate, int)
    if isinstance(node, Binary):
        return _binary(node, depth)
    if isinstance(node, Like):
        return _like(node, _compile(node.operand, depth))
    if isinstance(node, In):
        operand = _compile(node.operand, depth)
        return membership(node, operand, [_compile(item, depth) for item in node.items])
    if isinstance(node, Call):
        return _call(node, [_compile(arg, depth) for arg in node.args])
    raise TypeError(f"unknown CESQL node {node!r}")


def _not(value: bool) -> bool:
    return not value


def _binary(node: Binary, depth: int) -> Compiled:
    if node.op in ("AND", "OR", "XOR"):
        nodes = [node]
        while isinstance(nodes[-1].right, Binary) and nodes[-1].right.op == node.op:
            nodes.append(nodes[-1].right)
        operands = [_compile(n.left, depth) for n in nodes]
        operands.append(_compile(nodes[-1].right, depth))
        return chain(nodes, operands)
    left, right = _compile(node.left, depth), _compile(node.right, depth)
    if node.op in ARITHMETIC:
        return operation(node, [(left, int), (right, int)], ARITHMETIC[node.op], int)
    if node.op in ORDERING:
        return operation(node, [(left, int), (right, int)], ORDERING[node.op], bool)
    return _equality(node, left, right, negated=EQUALITY[node.op])


def _equality(node: Binary, left: Compiled, right: Compiled, *, negated: bool) -> Compiled:
    """``=``/``!=``/``<>``: the right operand's type decides, the left one is cast to it."""
    reads = left.reads_event or right.reads_event
    compare: Callable[[Value, Value], bool] = (lambda x, y: x != y) if negated else (lambda x, y: x == y)
    if right.type is not ANY:
        if right.constant:
            return _equals_constant(node, left, right.value, negated=negated)
        return operation(node, [(left, right.type), (right, right.type)], compare, bool)
    read_left, read_right = left.fn, right.fn

    def slow(attributes: Env) -> bool:
        x, y = read_left(attributes), read_right(attributes)
        errors: list[CesqlError] = []
        result = compare(cast_collecting(x, y.__class__, errors), y)
        if errors:
            raise Fault(errors, result, node)
        return result

    def dynamic(attributes: Env) -> bool:
        x, y = read_left(attributes), read_right(attributes)
        if x.__class__ is y.__class__:
            return (x == y) != negated
        return slow(attributes)

    return Compiled(node=node, fn=dynamic, type=bool, reads_event=reads)


def _equals_constant(node: Binary, left: Compiled, value: Value, *, negated: bool) -> Compiled:
    """``left = 'literal'`` and friends: one closure, and for an attribute one dict lookup."""
    tag = value.__class__
    if isinstance(left.node, Attribute):
        name, cast, missing = left.node.name, CASTS[tag], left.node

        def attribute_equals(attributes: Env) -> bool:
            x = attributes.get(name)
            if x.__class__ is not tag:
                if x is None:
                    raise Fault([MissingAttributeError(name)], False, missing)
                try:
                    x = cast(x)
                except Failed as failed:
                    raise Fault([failed.error], (failed.value == value) != negated, node) from None
            return (x == value) != negated

        return Compiled(node=node, fn=attribute_equals, type=bool, reads_event=True)
    read = typed(left, tag)
    slow = operation(node, [(left, tag)], lambda x: (x == value) != negated, bool).fn

    def equals(attributes: Env) -> bool:
        try:
            return (read(attributes) == value) != negated
        except Failed:
            return slow(attributes)  # type: ignore[return-value]

    return Compiled(node=node, fn=equals, type=bool, reads_event=left.reads_event)


def _like(node: Like, operand: Compiled) -> Compiled:
    matches, negated = compile_like(node.pattern), node.negated
    if isinstance(operand.node, Attribute):
        name, missing = operand.node.name, operand.node

        prefix = literal_prefix(node.pattern)
        if prefix is not None and not negated:

            def starts_with(attributes: Env) -> bool:
                value = attributes.get(name)
                if value.__class__ is str:
                    return value.startswith(prefix)
                if value is None:
                    raise Fault([MissingAttributeError(name)], False, missing)
                return to_str(value).startswith(prefix)

            return Compiled(node=node, fn=starts_with, type=bool, reads_event=True)

        def like_attribute(attributes: Env) -> bool:
            value = attributes.get(name)
            if value.__class__ is not str:
                if value is None:
                    raise Fault([MissingAttributeError(name)], False, missing)
                value = to_str(value)
            return matches(value) != negated

        return Compiled(node=node, fn=like_attribute, type=bool, reads_event=True)
    read = typed(operand, str)  # every value casts to String: no Failed possible

    def like(attributes: Env) -> bool:
        return matches(read(attributes)) != negated  # type: ignore[arg-type]

    return Compiled(node=node, fn=like, type=bool, reads_event=operand.reads_event)


def _call(node: Call, args: list[Compiled]) -> Compiled:
    function = resolve(node.name, len(args))
    if function is None:
        reason = f"no function {node.name} taking {len(args)} argument{'s' if len(args) != 1 else ''}"

        def missing(_: Env) -> Value:
            raise Fault([MissingFunctionError(reason)], False, node)

        return Compiled(node=node, fn=missing, type=bool, reads_event=False)
    operands = [(arg, function.param(i)) for i, arg in enumerate(args)]
    return operation(node, operands, function.impl, function.returns)


__all__ = ["Compiled", "Fn", "compile_tree"]
