"""CloudEvents 1.0 and 0.3 attribute rules, applied to every event a binding decodes.

Rules (each violation raises :class:`~broker.errors.InvalidEvent` with a message naming the
attribute and, where useful, the offending value):

* ``specversion``, ``id``, ``source``, ``type`` are required non-empty strings; ``specversion``
  is ``"1.0"`` or ``"0.3"``.
* Attribute names are lower-case letters and digits only (``^[a-z0-9]+$``); ``data`` and
  ``data_base64`` are reserved.
* Context attributes are strings; ``datacontenttype``, ``dataschema`` (1.0), ``schemaurl`` (0.3)
  and ``subject`` are non-empty when present. ``time`` is an RFC 3339 timestamp,
  ``dataschema``/``schemaurl`` an absolute URI, ``datacontenttype`` a media type
  (``type/subtype`` with optional parameters, RFC 2046).
* Extension values are strings, booleans or integers in the CloudEvents Integer range
  (32-bit signed); anything else (float, object, array, null) is refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from broker.errors import InvalidEvent
from broker.event import REQUIRED_ATTRIBUTES, SPEC_VERSIONS

_NAME = re.compile(r"[a-z0-9]+")
_RESERVED = frozenset({"data", "data_base64"})
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}[ \t]*(;.*)?", re.DOTALL)
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\x00-\x20\x7f]*")
# Field ranges are in the pattern so only days 29-31 need a calendar check.
_RFC3339 = re.compile(
    r"(\d{4})-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)"
    r"(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
)
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1

_CONTEXT_V1 = frozenset({*REQUIRED_ATTRIBUTES, "datacontenttype", "dataschema", "subject", "time"})
_CONTEXT_V03 = frozenset(
    {*REQUIRED_ATTRIBUTES, "datacontenttype", "datacontentencoding", "schemaurl", "subject", "time"}
)
# Names and media types already seen to be valid; bounded caches because regex checks are
# most of the validation cost on the hot path.
_valid_names: set[str] = set(_CONTEXT_V1 | _CONTEXT_V03)
_valid_media_types: set[str] = set()
_CACHE_LIMIT = 4096


def check_name(name: str) -> None:
    """Raise InvalidEvent unless ``name`` is a legal attribute name."""
    if name in _valid_names:
        return
    if name in _RESERVED:
        raise InvalidEvent(f"attribute name {name!r} is reserved")
    if _NAME.fullmatch(name) is None:
        raise InvalidEvent(
            f"attribute name {name!r} is invalid: names use only lower-case letters a-z and digits 0-9"
        )
    if len(_valid_names) < _CACHE_LIMIT:
        _valid_names.add(name)


def validate(attributes: Mapping[str, Any]) -> None:
    """Raise InvalidEvent when ``attributes`` break a CloudEvents rule (see module docstring)."""
    for name in REQUIRED_ATTRIBUTES:
        if name not in attributes:
            raise InvalidEvent(f"missing required attribute {name!r}")
        value = attributes[name]
        if not isinstance(value, str):
            raise InvalidEvent(f"attribute {name!r} must be a string, got {json_kind(value)}")
        if not value:
            raise InvalidEvent(f"attribute {name!r} must not be empty")
    version = attributes["specversion"]
    if version not in SPEC_VERSIONS:
        raise InvalidEvent(f"unsupported specversion {version!r} (expected 1.0 or 0.3)")
    context = _CONTEXT_V1 if version == "1.0" else _CONTEXT_V03
    for name, value in attributes.items():
        if name not in _valid_names:
            check_name(name)
        if name in context:
            if not isinstance(value, str):
                raise InvalidEvent(f"attribute {name!r} must be a string, got {json_kind(value)}")
            if name not in REQUIRED_ATTRIBUTES:
                _check_optional(name, value)
        elif type(value) is not str:
            check_extension_value(name, value)


def check_extension_value(name: str, value: Any) -> None:
    """Raise InvalidEvent unless ``value`` is a string, boolean or 32-bit integer."""
    if isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise InvalidEvent(f"attribute {name!r}: integer {value} is outside the 32-bit signed range")
        return
    raise InvalidEvent(f"attribute {name!r} must be a string, integer or boolean, got {json_kind(value)}")


def _check_optional(name: str, value: str) -> None:
    if not value:
        raise InvalidEvent(f"attribute {name!r} must not be empty when present")
    if name == "time":
        if not is_rfc3339(value):
            raise InvalidEvent(f"attribute 'time' is not an RFC 3339 timestamp: {value!r}")
    elif name == "datacontenttype":
        if value in _valid_media_types:
            return
        if _MEDIA_TYPE.fullmatch(value) is None:
            raise InvalidEvent(f"attribute 'datacontenttype' is not a media type (type/subtype): {value!r}")
        if len(_valid_media_types) < _CACHE_LIMIT:
            _valid_media_types.add(value)
    elif name in ("dataschema", "schemaurl"):
        if _URI.fullmatch(value) is None:
            raise InvalidEvent(f"attribute {name!r} is not an absolute URI: {value!r}")


def is_rfc3339(value: str) -> bool:
    """Whether ``value`` is an RFC 3339 date-time (leap second ``:60`` allowed)."""
    match = _RFC3339.match(value)
    if match is None or match.end() != len(value):
        return False
    year, month, day = match.group(1, 2, 3)
    if day > "28":
        try:
            date(int(year), int(month), int(day))
        except ValueError:
            return False
    return True


def json_kind(value: Any) -> str:
    """The JSON name of ``value``'s type, for error messages (``integer`` for whole numbers)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__
