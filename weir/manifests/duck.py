"""Knative's shared sub-types ("duck types"): ``KReference``, ``Destination`` and ``DeliverySpec``,
validated as the webhook does (``knative.dev/pkg`` ``duckv1`` and eventing's ``delivery_types.go``).

Durations are ISO-8601 (``PT0.2S``, ``PT1M``, ``P1D``) and become seconds. Years and months are
refused: they have no fixed length in seconds. Every bound is Knative's: ``timeout`` and
``backoffMax`` above zero, ``retryAfterMax`` and ``backoffDelay`` zero or more.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import isodate

from weir.manifests.fields import (
    MISSING,
    Problems,
    describe,
    dns_label,
    integer,
    join,
    obj,
    one_of,
    quote,
    string,
)
from weir.manifests.model import DeliveryOptions, Destination, KRef

BACKOFF_POLICIES = ("exponential", "linear")
FORMATS = ("json", "binary")
_INT32_MAX = 2**31 - 1


def kref(value: Any, path: str, problems: Problems) -> KRef | None:
    """A ``KReference``: ``apiVersion``, ``kind``, ``name`` required; ``namespace`` optional."""
    before = len(problems)
    fields = obj(value, path, problems, known=("apiVersion", "kind", "name", "namespace"))
    if fields is None:
        return None
    api_version = string(fields.get("apiVersion"), join(path, "apiVersion"), problems, required=True)
    kind = string(fields.get("kind"), join(path, "kind"), problems, required=True)
    name = string(fields.get("name"), join(path, "name"), problems, required=True)
    namespace = dns_label(fields.get("namespace"), join(path, "namespace"), problems)
    if len(problems) > before or api_version is None or kind is None or name is None:
        return None
    return KRef(api_version=api_version, kind=kind, name=name, namespace=namespace)


def destination(value: Any, path: str, problems: Problems, *, required: bool = False) -> Destination | None:
    """A ``Destination``: ``ref`` and/or ``uri``; without ``ref`` the ``uri`` must be an absolute
    http(s) URL, with ``ref`` it must be relative (it is resolved against the ref's URL)."""
    if value is None:
        if required:
            problems.add(path, MISSING)
        return None
    before = len(problems)
    fields = obj(value, path, problems, known=("ref", "uri"), unsupported=("CACerts", "audience"))
    if fields is None:
        return None
    raw_ref, raw_uri = fields.get("ref"), fields.get("uri")
    ref = None if raw_ref is None else kref(raw_ref, join(path, "ref"), problems)
    uri = string(raw_uri, join(path, "uri"), problems)
    if raw_ref is None and raw_uri in (None, ""):
        problems.add(path, "expected at least one of ref, uri; got none")
    elif uri is not None:
        _check_uri(uri, join(path, "uri"), problems, relative=raw_ref is not None)
    if len(problems) > before:
        return None
    return Destination(ref=ref, uri=uri)


def accepted_destination(value: Mapping[str, Any]) -> Destination:
    """The :class:`Destination` :func:`destination` gives for ``value``, which it must have
    accepted, read without checking it again (a Trigger's subscriber is read so on every use)."""
    raw_ref = value.get("ref")
    ref = None
    if raw_ref is not None:
        ref = KRef(
            api_version=raw_ref["apiVersion"],
            kind=raw_ref["kind"],
            name=raw_ref["name"],
            namespace=raw_ref.get("namespace") or None,  # "" is absent, as for destination()
        )
    return Destination(ref=ref, uri=value.get("uri") or None)


def _check_uri(uri: str, path: str, problems: Problems, *, relative: bool) -> None:
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError as exc:
        problems.add(path, f"{quote(uri)} is not a valid URI: {exc}")
        return
    if relative:
        if parts.scheme or parts.netloc:
            problems.add(path, f"{quote(uri)}: an absolute URI is not allowed when ref is set")
    elif parts.scheme not in ("http", "https") or not host:
        problems.add(path, f"{quote(uri)} must be an absolute http:// or https:// URI when ref is absent")


def delivery(value: Any, path: str, problems: Problems) -> DeliveryOptions | None:
    """A ``DeliverySpec``; ``None`` when absent or invalid (then ``problems`` says why)."""
    if value is None:
        return None
    before = len(problems)
    known = (
        "deadLetterSink",
        "retry",
        "backoffPolicy",
        "backoffDelay",
        "timeout",
        "retryAfterMax",
        "backoffMax",
        "format",
    )
    fields = obj(value, path, problems, known=known)
    if fields is None:
        return None
    get = fields.get

    def at(key: str) -> str:
        return join(path, key)

    options = DeliveryOptions(
        dead_letter_sink=destination(get("deadLetterSink"), at("deadLetterSink"), problems),
        retry=integer(get("retry"), at("retry"), problems, minimum=0, maximum=_INT32_MAX),
        backoff_policy=one_of(get("backoffPolicy"), at("backoffPolicy"), problems, BACKOFF_POLICIES),
        backoff_delay=duration(get("backoffDelay"), at("backoffDelay"), problems, zero=True),
        timeout=duration(get("timeout"), at("timeout"), problems, zero=False),
        retry_after_max=duration(get("retryAfterMax"), at("retryAfterMax"), problems, zero=True),
        backoff_max=duration(get("backoffMax"), at("backoffMax"), problems, zero=False),
        format=one_of(get("format"), at("format"), problems, FORMATS),
    )
    return None if len(problems) > before else options


def duration(value: Any, path: str, problems: Problems, *, zero: bool) -> float | None:
    """An ISO-8601 duration in seconds; negative is refused, zero only when ``zero``."""
    if value is None:
        return None
    if not isinstance(value, str):
        problems.add(path, f"must be an ISO-8601 duration string (e.g. PT5S), got {describe(value)}")
        return None
    try:
        # isodate reads a bare "PT" or a trailing "T" ("P1DT") as valid; ISO-8601 does not.
        if value.endswith("T"):
            raise isodate.ISO8601Error(value)
        parsed = isodate.parse_duration(value)
    except (isodate.ISO8601Error, ValueError, OverflowError):
        problems.add(path, f"{quote(value)} is not an ISO-8601 duration (e.g. PT5S)")
        return None
    if not isinstance(parsed, timedelta):
        reason = "years and months have no fixed length; use days or less (e.g. P30D)"
        problems.add(path, f"{quote(value)}: {reason}")
        return None
    seconds = parsed.total_seconds()
    if seconds < 0:
        problems.add(path, f"{quote(value)} must not be negative")
        return None
    if seconds == 0 and not zero:
        problems.add(path, f"{quote(value)} must be greater than zero")
        return None
    return seconds
