"""LIKE patterns (CESQL v1 §3.4.3), compiled once into a predicate over strings.

``%`` matches any run of characters (also empty), ``_`` exactly one character, ``\\%`` and
``\\_`` the literal characters. Any other backslash is a literal backslash, as in the reference
engines, so a wildcard-free pattern matches exactly its own text. Matching is case-sensitive and
whole-string.

The matcher never backtracks: the pattern is split at ``%`` into fixed-length segments; the first
must match at the start, the last at the end, and each middle one at its leftmost position after
the previous one (which is always a correct choice for fixed-length segments). Plain prefix,
suffix, containment and equality patterns become single ``str`` method calls.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Matcher = Callable[[str], bool]

_ONE = object()  # the "_" wildcard inside a segment


class _Segment:
    """A fixed-length run of literal characters and ``_`` wildcards."""

    __slots__ = ("length", "literal", "regex")

    def __init__(self, items: list[str | object]) -> None:
        self.length = len(items)
        if all(isinstance(i, str) for i in items):
            self.literal: str | None = "".join(i for i in items if isinstance(i, str))
            self.regex: re.Pattern[str] | None = None
        else:
            self.literal = None
            source = "".join("." if i is _ONE else re.escape(str(i)) for i in items)
            self.regex = re.compile(source, re.DOTALL)

    def at(self, text: str, pos: int) -> bool:
        """Whether the segment matches ``text`` at ``pos`` (caller checked the length fits)."""
        if self.literal is not None:
            return text.startswith(self.literal, pos)
        assert self.regex is not None
        return self.regex.match(text, pos) is not None

    def find(self, text: str, start: int, stop: int) -> int:
        """Leftmost offset in ``[start, stop - length]`` where the segment matches, or -1."""
        if self.literal is not None:
            return text.find(self.literal, start, stop)
        assert self.regex is not None
        found = self.regex.search(text, start, stop)
        return -1 if found is None else found.start()


def compile_like(pattern: str) -> Matcher:
    """A predicate telling whether a string matches ``pattern``."""
    segments = [_Segment(items) for items in _split(pattern)]
    if len(segments) == 1:
        return _whole(segments[0])
    first, last, middle = segments[0], segments[-1], [s for s in segments[1:-1] if s.length]
    if not middle and first.literal is not None and last.literal is not None:
        return _simple(first.literal, last.literal)
    if len(middle) == 1 and not first.length and not last.length and middle[0].literal is not None:
        needle = middle[0].literal
        return lambda text: needle in text
    shortest = sum(s.length for s in segments)

    def match(text: str) -> bool:
        end = len(text)
        if end < shortest or not first.at(text, 0):
            return False
        stop = end - last.length
        if not last.at(text, stop):
            return False
        pos = first.length
        for segment in middle:
            found = segment.find(text, pos, stop)
            if found < 0:
                return False
            pos = found + segment.length
        return True

    return match


def literal_prefix(pattern: str) -> str | None:
    """The literal text of a pure prefix pattern (``'com.example.%'``), else ``None``, so a
    caller may inline ``str.startswith``."""
    segments = _split(pattern)
    if len(segments) < 2 or any(segments[1:]):
        return None
    first = segments[0]
    return "".join(i for i in first if isinstance(i, str)) if all(isinstance(i, str) for i in first) else None


def _whole(segment: _Segment) -> Matcher:
    if segment.literal is not None:
        literal = segment.literal
        return lambda text: text == literal
    assert segment.regex is not None
    regex = segment.regex
    return lambda text: regex.fullmatch(text) is not None


def _simple(prefix: str, suffix: str) -> Matcher:
    """``prefix%suffix`` (either may be empty; ``%%`` runs collapse to one)."""
    if not suffix:
        return lambda text: text.startswith(prefix)
    if not prefix:
        return lambda text: text.endswith(suffix)
    shortest = len(prefix) + len(suffix)
    return lambda text: len(text) >= shortest and text.startswith(prefix) and text.endswith(suffix)


def _split(pattern: str) -> list[list[str | object]]:
    """The pattern's segments between unescaped ``%``, each a list of characters and ``_ONE``."""
    segments: list[list[str | object]] = [[]]
    pos, end = 0, len(pattern)
    while pos < end:
        char = pattern[pos]
        if char == "\\" and pos + 1 < end and pattern[pos + 1] in "%_":
            segments[-1].append(pattern[pos + 1])
            pos += 2
            continue
        if char == "%":
            segments.append([])
        else:
            segments[-1].append(_ONE if char == "_" else char)
        pos += 1
    return segments
