"""AND, OR and XOR, compiled as flat chains.

The parser groups ``a AND b AND c`` as ``a AND (b AND c)``. A run of one operator down that
right spine is evaluated by one closure looping over the operands, left to right, with AND/OR
short-circuit, so long chains cost no recursion. The fast path is exact whenever no operand needs
a failing cast. The slow path reproduces the nested operators' results: a cast error belongs to
the innermost operator whose operand it was; that operator's fault abandons the ones around it.
"""

from __future__ import annotations

from collections.abc import Sequence

from triggers.cesql.ast import Binary, Value
from triggers.cesql.closures import Compiled, Env, Fn, typed
from triggers.cesql.errors import CesqlError
from triggers.cesql.signals import Failed, Fault
from triggers.cesql.types import cast_collecting


def chain(nodes: Sequence[Binary], operands: Sequence[Compiled]) -> Compiled:
    """``operands[0] op operands[1] op …`` where ``nodes[i]`` joins operand ``i`` to the rest;
    every node has the same ``op`` (AND, OR or XOR)."""
    op = nodes[0].op
    slow = _slow(op, nodes, [c.fn for c in operands])
    fns = tuple(typed(c, bool) for c in operands)
    if op == "AND":
        fn = _and(fns, slow)
    elif op == "OR":
        fn = _or(fns, slow)
    else:
        fn = _xor(fns, slow)
    return Compiled(node=nodes[0], fn=fn, type=bool, reads_event=any(c.reads_event for c in operands))


def _and(fns: tuple[Fn, ...], slow: Fn) -> Fn:
    if len(fns) == 2:
        x, y = fns

        def and2(attributes: Env) -> Value:
            try:
                return x(attributes) and y(attributes)
            except Failed:
                return slow(attributes)

        return and2

    if len(fns) == 3:
        x, y, z = fns

        def and3(attributes: Env) -> Value:
            try:
                return x(attributes) and y(attributes) and z(attributes)
            except Failed:
                return slow(attributes)

        return and3

    def and_n(attributes: Env) -> bool:
        try:
            for fn in fns:
                if not fn(attributes):
                    return False
            return True
        except Failed:
            return slow(attributes)  # type: ignore[return-value]

    return and_n


def _or(fns: tuple[Fn, ...], slow: Fn) -> Fn:
    if len(fns) == 2:
        x, y = fns

        def or2(attributes: Env) -> Value:
            try:
                return x(attributes) or y(attributes)
            except Failed:
                return slow(attributes)

        return or2

    if len(fns) == 3:
        x, y, z = fns

        def or3(attributes: Env) -> Value:
            try:
                return x(attributes) or y(attributes) or z(attributes)
            except Failed:
                return slow(attributes)

        return or3

    def or_n(attributes: Env) -> bool:
        try:
            for fn in fns:
                if fn(attributes):
                    return True
            return False
        except Failed:
            return slow(attributes)  # type: ignore[return-value]

    return or_n


def _xor(fns: tuple[Fn, ...], slow: Fn) -> Fn:
    def xor(attributes: Env) -> bool:
        try:
            value = False
            for fn in fns:
                value = value != fn(attributes)
            return value
        except Failed:
            return slow(attributes)  # type: ignore[return-value]

    return xor


def _slow(op: str, nodes: Sequence[Binary], raws: Sequence[Fn]) -> Fn:
    return _slow_xor(nodes, raws) if op == "XOR" else _slow_short_circuit(op == "OR", nodes, raws)


def _slow_short_circuit(stop_on: bool, nodes: Sequence[Binary], raws: Sequence[Fn]) -> Fn:
    """AND (``stop_on`` false) / OR (true): each node casts its left operand before it evaluates
    its right one, so a cast error is recorded before a later operand faults."""
    innermost = len(nodes) - 1

    def slow(attributes: Env) -> bool:
        errors: list[CesqlError] = []
        faulty = -1  # index of the innermost node with a cast error of its own
        value = False
        for index, raw in enumerate(raws):
            before = len(errors)
            value = bool(cast_collecting(_evaluate_after(raw, attributes, errors), bool, errors))
            if len(errors) != before:
                faulty = min(index, innermost)
            if value is stop_on:
                break
        if faulty < 0:
            return value
        # Only the outermost node can be the whole expression; an inner one's value is unused.
        raise Fault(errors, value if faulty == 0 else False, nodes[faulty])

    return slow


def _slow_xor(nodes: Sequence[Binary], raws: Sequence[Fn]) -> Fn:
    """XOR evaluates both operands, then casts: every operand is evaluated first (a Fault among
    them propagates as it is), then the nested nodes cast from the innermost one outwards, and the
    first node with a cast error faults."""
    last = len(raws) - 1

    def slow(attributes: Env) -> bool:
        values = [raw(attributes) for raw in raws]
        errors: list[CesqlError] = []
        left = cast_collecting(values[last - 1], bool, errors)
        result = left != cast_collecting(values[last], bool, errors)
        index = last - 1
        while not errors and index > 0:
            index -= 1
            result = cast_collecting(values[index], bool, errors) != result
        if errors:
            raise Fault(errors, result, nodes[index])
        return result

    return slow


def _evaluate_after(fn: Fn, attributes: Env, errors: list[CesqlError]) -> Value:
    """``fn(attributes)``; a Fault from it gets the chain's earlier cast errors put in front."""
    try:
        return fn(attributes)
    except Fault as fault:
        fault.errors[:0] = errors
        raise
