"""The CESQL syntax tree the parser builds and the compiler turns into closures.

Parentheses leave no node. ``NOT LIKE`` / ``NOT IN`` are one node with ``negated`` set, since the
spec defines them as single operators (one zero value when an operand fails). ``position`` is
the 0-based offset of the node's operator or first token, used in error messages.
"""

from __future__ import annotations

from dataclasses import dataclass

Value = bool | int | str
"""A CESQL value: Boolean, Integer (signed 32-bit) or String."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Node:
    """Base of every node. Nodes compare by identity: two equal-looking nodes are distinct."""

    position: int


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Literal(Node):
    value: Value


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Attribute(Node):
    name: str
    """Lower-cased attribute name."""


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Exists(Node):
    name: str


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Unary(Node):
    op: str
    """``NOT`` or ``-``."""
    operand: Node


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Binary(Node):
    op: str
    """``AND OR XOR = != <> < <= > >= + - * / %``."""
    left: Node
    right: Node


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Like(Node):
    operand: Node
    pattern: str
    """The pattern exactly as written (escapes not yet interpreted)."""
    negated: bool


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class In(Node):
    operand: Node
    items: tuple[Node, ...]
    negated: bool


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Call(Node):
    name: str
    """Upper-cased function name."""
    args: tuple[Node, ...]
