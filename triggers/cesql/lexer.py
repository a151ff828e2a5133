"""CESQL tokens, following the lexer of the official ANTLR grammar (``CESQLLexer.g4``).

- Blanks (space, tab, CR, LF) separate tokens.
- Words (``[A-Za-z0-9_]+``):
  - all digits → ``INT``;
  - a keyword, case-insensitively (``AND OR XOR NOT LIKE EXISTS IN TRUE FALSE``) → that keyword
    in upper case;
  - anything else → ``WORD``. The parser decides whether a word is an attribute or a function
    name, by whether ``(`` follows.
- Strings are ``'…'`` or ``"…"``. A backslash always takes the next character with it. Only
  ``\\'`` inside ``'…'`` and ``\\"`` inside ``"…"`` are unescaped. Every other backslash pair
  stays verbatim, as in the reference engines, so ``'ab\\c'`` is four characters; LIKE gives
  ``\\%`` and ``\\_`` their meaning.
- Operators: ``( ) , = != <> < <= > >= + - * / %``.

Integer signs are not part of ``INT``: the parser folds ``-`` / ``+`` directly before an
integer literal into the literal, so ``5-3`` means ``5 - 3`` (a pure ANTLR lexer would lex it as
``5`` followed by ``-3``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from triggers.cesql.errors import CesqlParseError

KEYWORDS = frozenset({"AND", "OR", "XOR", "NOT", "LIKE", "EXISTS", "IN", "TRUE", "FALSE"})
OPERATORS = ("!=", "<>", "<=", ">=", "(", ")", ",", "=", "<", ">", "+", "-", "*", "/", "%")

_BLANK = re.compile(r"[ \t\r\n]+")
_WORD = re.compile(r"[A-Za-z0-9_]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class Token:
    """One token. ``kind`` is ``INT``, ``STRING``, ``WORD``, ``EOF``, a keyword or an operator."""

    kind: str
    text: str
    """The source text, except for ``STRING`` where it is the unescaped value."""
    position: int
    """0-based character offset of the token's first character."""


def tokenize(source: str) -> list[Token]:
    """All tokens of ``source``, ending with an ``EOF`` token. Raises CesqlParseError."""
    tokens: list[Token] = []
    pos, end = 0, len(source)
    while True:
        blank = _BLANK.match(source, pos)
        if blank:
            pos = blank.end()
        if pos >= end:
            tokens.append(Token(kind="EOF", text="", position=end))
            return tokens
        char = source[pos]
        if char in "'\"":
            value, after = _string(source, pos)
            tokens.append(Token(kind="STRING", text=value, position=pos))
            pos = after
            continue
        word = _WORD.match(source, pos)
        if word:
            text = word.group()
            upper = text.upper()
            kind = "INT" if text.isdigit() else upper if upper in KEYWORDS else "WORD"
            tokens.append(Token(kind=kind, text=text, position=pos))
            pos = word.end()
            continue
        for op in OPERATORS:
            if source.startswith(op, pos):
                tokens.append(Token(kind=op, text=op, position=pos))
                pos += len(op)
                break
        else:
            raise CesqlParseError(pos, f"unexpected character {char!r}")


def _string(source: str, start: int) -> tuple[str, int]:
    """The unescaped value of the string literal opening at ``start``, and the offset after it."""
    quote = source[start]
    parts: list[str] = []
    pos = start + 1
    while pos < len(source):
        char = source[pos]
        if char == quote:
            return "".join(parts), pos + 1
        if char == "\\" and pos + 1 < len(source):
            following = source[pos + 1]
            parts.append(following if following == quote else char + following)
            pos += 2
            continue
        parts.append(char)
        pos += 1
    raise CesqlParseError(start, "unterminated string literal")
