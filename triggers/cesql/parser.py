"""A Pratt parser for CESQL v1, with the precedences of the official ANTLR grammar
(``CESQLParser.g4``), highest first:

1. function calls, literals, attributes, ``EXISTS name``, parenthesised expressions;
2. prefix ``NOT`` and ``-`` (their operand is a level-1/2 expression, so ``NOT a = b`` is
   ``(NOT a) = b``);
3. ``[NOT] LIKE 'pattern'`` (the pattern must be a string literal);
4. ``[NOT] IN (a, b, …)`` (at least one element);
5. ``* / %``, then 6. ``+ -``, then 7. ``= != <> < <= > >=`` (all left-associative);
8. ``AND OR XOR``: one level, right-associative as in the grammar, so ``a AND b OR c`` is
   ``a AND (b OR c)`` (as in the Go and Java engines Knative uses). Evaluation is still left to
   right with short-circuit; write parentheses when mixing them.

Integer literals must fit in 32 bits after folding a directly preceding sign, so
``-2147483648`` is valid and ``2147483648`` is not. Identifiers are ``[a-z0-9]+`` compared
case-insensitively (lower-cased); function names are ``[A-Za-z][A-Za-z_]*``, upper-cased.
"""

from __future__ import annotations

import re

from triggers.cesql.ast import Attribute, Binary, Call, Exists, In, Like, Literal, Node, Unary
from triggers.cesql.errors import CesqlParseError
from triggers.cesql.lexer import Token, tokenize

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
MAX_DEPTH = 100
"""Deepest nesting of sub-expressions accepted (chains of AND/OR/XOR count once), so neither
compiling nor evaluating can exhaust Python's recursion limit."""

_LOGIC, _COMPARE, _ADD, _MULTIPLY, _IN, _LIKE, _PREFIX = 10, 20, 30, 40, 50, 60, 70
_BINARY_POWER = {
    "AND": _LOGIC,
    "OR": _LOGIC,
    "XOR": _LOGIC,
    **dict.fromkeys(("=", "!=", "<>", "<", "<=", ">", ">="), _COMPARE),
    "+": _ADD,
    "-": _ADD,
    "*": _MULTIPLY,
    "/": _MULTIPLY,
    "%": _MULTIPLY,
    "IN": _IN,
    "LIKE": _LIKE,
}
_IDENTIFIER = re.compile(r"[A-Za-z0-9]+")
_FUNCTION = re.compile(r"[A-Za-z][A-Za-z_]*")


def parse(source: str) -> Node:
    """The syntax tree of ``source``. Raises CesqlParseError with the offending position."""
    parser = _Parser(tokenize(source))
    tree = parser.expression(0)
    parser.expect("EOF", "end of expression")
    return tree


class _Parser:
    __slots__ = ("_depth", "_index", "_tokens")

    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._depth = 0

    def peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def advance(self) -> Token:
        token = self.peek()
        self._index += 1
        return token

    def expect(self, kind: str, what: str) -> Token:
        token = self.peek()
        if token.kind != kind:
            raise CesqlParseError(token.position, f"expected {what}, found {_describe(token)}")
        return self.advance()

    def expression(self, min_power: int) -> Node:
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise CesqlParseError(
                self.peek().position, f"expression nested more than {MAX_DEPTH} levels deep"
            )
        left = self.prefix()
        while True:
            power = self.infix_power()
            if power <= min_power:
                break
            if power == _LOGIC:
                left = self.logic_chain(left)
                break
            left = self.infix(left)
        self._depth -= 1
        return left

    def logic_chain(self, first: Node) -> Node:
        """``first AND b OR c …`` grouped to the right (grammar: ``<assoc=right>``), read with a
        loop so that long chains need no recursion."""
        operands, operators = [first], []
        while self.peek().kind in ("AND", "OR", "XOR"):
            operators.append(self.advance())
            operands.append(self.expression(_LOGIC))
        tree = operands[-1]
        for index in range(len(operators) - 1, -1, -1):
            op = operators[index]
            tree = Binary(position=op.position, op=op.kind, left=operands[index], right=tree)
        return tree

    def infix_power(self) -> int:
        token = self.peek()
        if token.kind == "NOT":
            following = self.peek(1).kind
            return _BINARY_POWER[following] if following in ("LIKE", "IN") else 0
        return _BINARY_POWER.get(token.kind, 0)

    def prefix(self) -> Node:
        token = self.advance()
        kind, pos = token.kind, token.position
        if kind == "INT":
            return _integer(token.text, pos)
        if kind in ("-", "+") and self.peek().kind == "INT":
            digits = self.advance().text
            return _integer(digits if kind == "+" else "-" + digits, pos)
        if kind == "STRING":
            return Literal(position=pos, value=token.text)
        if kind in ("TRUE", "FALSE"):
            return Literal(position=pos, value=kind == "TRUE")
        if kind in ("NOT", "-"):
            return Unary(position=pos, op=kind, operand=self.expression(_PREFIX))
        if kind == "(":
            inner = self.expression(0)
            self.expect(")", "')'")
            return inner
        if kind == "EXISTS":
            name = self.expect("WORD", "an attribute name after EXISTS")
            return Exists(position=pos, name=_identifier(name))
        if kind == "WORD":
            if self.peek().kind == "(":
                return self.call(token)
            return Attribute(position=pos, name=_identifier(token))
        raise CesqlParseError(pos, f"expected an expression, found {_describe(token)}")

    def infix(self, left: Node) -> Node:
        token = self.advance()
        negated = token.kind == "NOT"
        if negated:
            token = self.advance()
        if token.kind == "LIKE":
            pattern = self.peek()
            if pattern.kind != "STRING":
                reason = f"the LIKE pattern must be a string literal, found {_describe(pattern)}"
                raise CesqlParseError(pattern.position, reason)
            self.advance()
            return Like(position=token.position, operand=left, pattern=pattern.text, negated=negated)
        if token.kind == "IN":
            self.expect("(", "'(' to open the IN set")
            items = self.items(")", "IN set")
            if not items:
                raise CesqlParseError(token.position, "the IN set must have at least one element")
            return In(position=token.position, operand=left, items=items, negated=negated)
        right = self.expression(_BINARY_POWER[token.kind])
        return Binary(position=token.position, op=token.kind, left=left, right=right)

    def call(self, name: Token) -> Node:
        if not _FUNCTION.fullmatch(name.text):
            raise CesqlParseError(name.position, f"invalid function name {name.text!r}")
        self.advance()  # "("
        args = self.items(")", "argument list")
        return Call(position=name.position, name=name.text.upper(), args=args)

    def items(self, close: str, what: str) -> tuple[Node, ...]:
        """Comma-separated expressions up to ``close`` (consumed); may be empty."""
        items: list[Node] = []
        if self.peek().kind == close:
            self.advance()
            return ()
        while True:
            items.append(self.expression(0))
            token = self.advance()
            if token.kind == close:
                return tuple(items)
            if token.kind != ",":
                raise CesqlParseError(
                    token.position, f"expected ',' or {close!r} in {what}, found {_describe(token)}"
                )


def _integer(text: str, pos: int) -> Literal:
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        raise CesqlParseError(pos, f"integer literal {text} is outside the signed 32-bit range")
    return Literal(position=pos, value=value)


def _identifier(token: Token) -> str:
    if not _IDENTIFIER.fullmatch(token.text):
        raise CesqlParseError(token.position, f"invalid attribute name {token.text!r}: use [a-z0-9]+")
    return token.text.lower()


def _describe(token: Token) -> str:
    if token.kind == "EOF":
        return "end of expression"
    if token.kind == "STRING":
        return "a string literal"
    return repr(token.text)
