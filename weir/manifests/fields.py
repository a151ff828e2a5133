"""Field-level checks shared by every kind, reporting the way Knative's webhook does.

Each reader takes the raw YAML value and its field path (``spec.delivery.retry``), appends every
problem to a :class:`Problems` and returns the typed value, or ``None`` when the field is absent
or wrong. A YAML ``null`` counts as absent, as it does for Kubernetes. Readers never raise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
MISSING = "missing required field"


def join(path: str, key: str | int) -> str:
    """The path of ``key`` below ``path``: ``a.b``, ``a[0]``, or ``a[key.with/dots]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key}]"


@dataclass(slots=True)
class Problems:
    """Problems of one document, each a field path (for locating its line) and a message."""

    items: list[tuple[str, str]] = field(default_factory=list)

    def add(self, path: str, reason: str) -> None:
        """Report ``path: reason`` (just ``reason`` when the problem is about the whole document)."""
        self.items.append((path, f"{path}: {reason}" if path else reason))

    def unknown(self, path: str) -> None:
        self.items.append((path, f'unknown field "{path}"'))

    def __len__(self) -> int:
        return len(self.items)


def obj(
    value: Any,
    path: str,
    problems: Problems,
    *,
    known: Collection[str],
    unsupported: Collection[str] = (),
    ignored: Collection[str] = (),
) -> dict[str, Any] | None:
    """``value`` as an object whose fields are all ``known``; other fields are reported
    (``unsupported`` ones as Knative fields Weir does not implement) and ``ignored`` are dropped."""
    if not isinstance(value, dict):
        problems.add(path, f"must be an object, got {describe(value)}")
        return None
    result: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            problems.add(path, f"field name {key!r} is not a string")
        elif key in known:
            result[key] = item
        elif key in unsupported:
            problems.add(join(path, key), "not supported yet")
        elif key not in ignored:
            problems.unknown(join(path, key))
    return result


def string(value: Any, path: str, problems: Problems, *, required: bool = False) -> str | None:
    """A string; ``""`` counts as absent (Go's zero value), so a required one must be non-empty."""
    if value is None or value == "":
        if required:
            problems.add(path, MISSING)
        return None
    if not isinstance(value, str):
        problems.add(path, f"must be a string, got {describe(value)}")
        return None
    return value


def one_of(value: Any, path: str, problems: Problems, choices: Collection[str]) -> str | None:
    text = string(value, path, problems)
    if text is not None and text not in choices:
        allowed = ", ".join(choices)
        problems.add(path, f"{quote(text)} is not one of {allowed}")
        return None
    return text


def boolean(value: Any, path: str, problems: Problems) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        problems.add(path, f"must be true or false, got {describe(value)}")
        return None
    return value


def integer(value: Any, path: str, problems: Problems, *, minimum: int, maximum: int) -> int | None:
    if value is None:
        return None
    # bool is an int subclass in Python; YAML ``true`` is not a count.
    if not isinstance(value, int) or isinstance(value, bool):
        problems.add(path, f"must be an integer, got {describe(value)}")
        return None
    if not minimum <= value <= maximum:
        problems.add(path, f"{value} is out of range [{minimum}, {maximum}]")
        return None
    return value


def string_map(value: Any, path: str, problems: Problems) -> dict[str, str]:
    """A map of strings to strings (annotations, labels); bad entries are reported and left out."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.add(path, f"must be a map of strings, got {describe(value)}")
        return {}
    result: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key:
            problems.add(path, f"key {key!r} must be a non-empty string")
        elif not isinstance(item, str):
            # YAML turns unquoted true/10/2024-01-01 into other types; Kubernetes wants strings.
            problems.add(join(path, key), f"must be a string (quote it), got {describe(item)}")
        else:
            result[key] = item
    return result


def _dns_name(
    value: Any, path: str, problems: Problems, required: bool, pattern: re.Pattern[str], limit: int, what: str
) -> str | None:
    text = string(value, path, problems, required=required)
    if text is not None and (len(text) > limit or not pattern.fullmatch(text)):
        problems.add(path, f"{quote(text)} is not a DNS-1123 {what}, at most {limit} characters)")
        return None
    return text


def dns_label(value: Any, path: str, problems: Problems, *, required: bool = False) -> str | None:
    """A DNS-1123 label (namespaces): lower-case alphanumerics and ``-``, at most 63 characters."""
    what = "label (lower-case letters, digits and '-', starting and ending with a letter or digit"
    return _dns_name(value, path, problems, required, _DNS_LABEL, 63, what)


def dns_subdomain(value: Any, path: str, problems: Problems, *, required: bool = False) -> str | None:
    """A DNS-1123 subdomain (object names): like a label, plus ``.``, at most 253 characters."""
    what = "subdomain (lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
    return _dns_name(value, path, problems, required, _DNS_SUBDOMAIN, 253, what)


def quote(text: str) -> str:
    """``text`` as a JSON string, so quotes and control characters stay visible."""
    return json.dumps(text, ensure_ascii=False)


def describe(value: Any) -> str:
    """A short description of a wrong value for messages: ``a list``, ``the number 5``, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return quote(value) if len(value) <= 40 else quote(value[:40] + "...")
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"
