"""Conversion between :class:`~broker.event.Event` and the official SDK (``cloudevents.core`` 2.x).

Off the hot path: for code and tests that speak the SDK's event type.

* :func:`to_sdk` hands the SDK the data as bytes, unchanged, so the SDK's own bindings send it
  byte-for-byte; ``time`` becomes a timezone-aware ``datetime``. The SDK adds ``time`` (now) to
  an event that has none.
* :func:`from_sdk` turns ``datetime`` values into RFC 3339 strings (``Z`` for UTC) and data into
  bytes: ``bytes`` unchanged, ``str`` as UTF-8, anything else (dict, list) as JSON text. The
  result is validated like any decoded event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.common import get_event_factory_for_version
from cloudevents.core.exceptions import BaseCloudEventException

from broker.bindings.validate import validate
from broker.errors import InvalidEvent
from broker.event import AttrValue, Event


def to_sdk(event: Event) -> BaseCloudEvent:
    """The event as an SDK CloudEvent (v1.0 or v0.3 class by ``specversion``)."""
    attributes: dict[str, Any] = dict(event.attributes)
    time = attributes.get("time")
    if isinstance(time, str):
        try:
            attributes["time"] = datetime.fromisoformat(time.upper())
        except ValueError:
            raise InvalidEvent(f"attribute 'time' is not an RFC 3339 timestamp: {time!r}") from None
    factory = get_event_factory_for_version(event.specversion)
    try:
        return factory(attributes, event.data)
    except BaseCloudEventException as exc:
        raise InvalidEvent(f"the SDK refused the event: {exc}") from None


def from_sdk(sdk_event: BaseCloudEvent) -> Event:
    """A validated Event from an SDK CloudEvent; raises InvalidEvent."""
    attributes: dict[str, AttrValue] = {}
    for name, value in sdk_event.get_attributes().items():
        if value is None:
            continue
        # Values other than datetime keep their type; validate() refuses non-CloudEvents types.
        attributes[name] = _rfc3339(value) if isinstance(value, datetime) else value
    validate(attributes)
    return Event(attributes, _data_bytes(sdk_event.get_data()))


def _rfc3339(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise InvalidEvent(f"attribute 'time' has no time zone: {moment.isoformat()!r}")
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _data_bytes(data: Any) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str):
        return data.encode("utf-8")
    try:
        return orjson.dumps(data)
    except orjson.JSONEncodeError as exc:
        raise InvalidEvent(f"event data cannot be written as JSON: {exc}") from None
