"""Header values of ``ce-`` attributes in HTTP binary mode (CloudEvents HTTP binding §3.1.3.2).

Encoding percent-encodes, as UTF-8 ``%XY`` with upper-case hex, the space, ``"``, ``%`` and every
character outside U+0021–U+007E; everything else is sent as is.

Decoding, in this order: unescape an RFC 7230 quoted-string (older senders), then exactly one round
of percent-decoding. Lower-case hex and unnecessary escapes (``%41``) are accepted; a malformed
escape (``%G1``, a trailing ``%``) and bytes that are not valid UTF-8 after decoding (``%C0%A0``)
raise :class:`~broker.errors.InvalidEvent` naming the header.

Input strings are the header bytes as the HTTP server decoded them: ISO-8859-1 (ASGI) or UTF-8
with ``surrogateescape`` (aiohttp); both are turned back into the original bytes before decoding.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote_to_bytes

from broker.errors import InvalidEvent

# Printable ASCII minus space, '"' and '%': the characters a header value may carry unencoded.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%')
_NEEDS_ENCODING = re.compile(r"[^\x21\x23\x24\x26-\x7e]")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


def encode_value(value: str) -> str:
    """The header form of an attribute's canonical string value."""
    if _NEEDS_ENCODING.search(value) is None:
        return value
    try:
        return quote(value, safe=_SAFE, encoding="utf-8", errors="strict")
    except UnicodeEncodeError:
        # Only a lone surrogate can get here; it has no UTF-8 form.
        raise InvalidEvent(f"attribute value {value!r} is not valid Unicode text") from None


def decode_value(header: str, value: str) -> str:
    """The attribute value carried by header ``header`` (used in error messages only)."""
    if value.isascii() and "%" not in value and not value.startswith('"'):
        return value
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        value = _unquote_string(header, value[1:-1])
    if "%" not in value and value.isascii():
        return value
    if _BAD_ESCAPE.search(value) is not None:
        raise InvalidEvent(f"header {header}: malformed percent-escape in {value!r}")
    try:
        return unquote_to_bytes(_raw_bytes(value)).decode("utf-8")
    except UnicodeError:
        raise InvalidEvent(f"header {header}: invalid UTF-8 after percent-decoding") from None


def _unquote_string(header: str, inner: str) -> str:
    """The content of an RFC 7230 quoted-string (without its outer quotes)."""
    if "\\" not in inner:
        if '"' in inner:
            raise InvalidEvent(f"header {header}: unescaped '\"' inside a quoted-string")
        return inner
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise InvalidEvent(f"header {header}: quoted-string ends with a lone backslash")
            out.append(escaped)
        elif char == '"':
            raise InvalidEvent(f"header {header}: unescaped '\"' inside a quoted-string")
        else:
            out.append(char)
    return "".join(out)


def _raw_bytes(value: str) -> bytes:
    """The bytes the sender put on the wire for ``value``."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode("utf-8", "surrogateescape")
