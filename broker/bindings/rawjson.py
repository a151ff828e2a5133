"""The raw text of the ``data`` member in structured JSON, so JSON data reaches subscribers
byte-for-byte (spacing and number forms as the producer wrote them), as Knative's Go SDK keeps it.

The standard library's :meth:`json.JSONDecoder.raw_decode` reports where each value ends, which
is all that is needed to slice members out of an object already validated by orjson.
"""

from __future__ import annotations

import json
import re

_DECODER = json.JSONDecoder()
_WS = re.compile(r"[ \t\n\r]*")


def _skip(text: str, i: int) -> int:
    match = _WS.match(text, i)
    return match.end() if match else i


def _member(text: str, i: int, key: str) -> tuple[str | None, int]:
    """The raw value of ``key`` in the object starting at ``text[i]`` (last one wins, as in
    parsers), and the index just past the object."""
    i = _skip(text, i + 1)
    found: str | None = None
    if text[i] == "}":
        return None, i + 1
    while True:
        name, i = _DECODER.raw_decode(text, i)
        i = _skip(text, i)
        i = _skip(text, i + 1)  # past ':'
        _, end = _DECODER.raw_decode(text, i)
        if name == key:
            found = text[i:end]
        i = _skip(text, end)
        if text[i] == "}":
            return found, i + 1
        i = _skip(text, i + 1)  # past ','


def object_data(body: bytes) -> bytes | None:
    """The raw ``data`` value of one structured event, or ``None`` (absent, or not scannable)."""
    try:
        text = body.decode("utf-8")
        raw, _ = _member(text, _skip(text, 0), "data")
    except (ValueError, IndexError):
        return None
    return None if raw is None else raw.encode("utf-8")


def batch_data(body: bytes) -> list[bytes | None] | None:
    """The raw ``data`` value of each event of a batch, or ``None`` when the body cannot be scanned."""
    try:
        text = body.decode("utf-8")
        i = _skip(text, _skip(text, 0) + 1)
        found: list[bytes | None] = []
        while text[i] != "]":
            raw, i = _member(text, i, "data")
            found.append(None if raw is None else raw.encode("utf-8"))
            i = _skip(text, i)
            if text[i] == ",":
                i = _skip(text, i + 1)
    except (ValueError, IndexError):
        return None
    return found
