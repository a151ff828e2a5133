"""The CloudEvents JSON event format (single events and batches), on top of orjson.

Reading (:func:`from_dict`): every member except ``data``/``data_base64`` is an attribute and
keeps its JSON type (string, integer, boolean). ``data_base64`` is decoded to bytes. ``data`` is
stored as bytes: when ``datacontenttype`` is JSON (``*/json``, ``*/*+json``) or absent it is the
JSON text of the value; otherwise a string is its UTF-8 bytes and any other value its JSON text.
``"data": null`` means no data. CloudEvents 0.3 ``datacontentencoding`` describes the JSON
encoding, not the event: ``base64`` is decoded and the attribute dropped on reading, and on
writing it is set only when the data is written in base64.

Writing (:func:`to_dict`, :func:`to_json`): data that is valid JSON and JSON-typed is written as
a JSON value (by :func:`to_json` byte-for-byte as stored); otherwise valid UTF-8 is written as a
string, and anything else as ``data_base64`` (0.3: ``data`` plus ``datacontentencoding: base64``).
Reading what was written gives back the same attributes and the same data bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from broker.bindings import rawjson
from broker.bindings.validate import json_kind, validate
from broker.errors import InvalidEvent
from broker.event import Event

_DATA = "data"
_DATA_BASE64 = "data_base64"
_ENCODING = "datacontentencoding"
_NOT_JSON = object()


def is_json_type(datacontenttype: Any) -> bool:
    """Whether data of this content type is JSON (absent counts as ``application/json``)."""
    if datacontenttype is None:
        return True
    media = str(datacontenttype).split(";", 1)[0].strip().lower()
    subtype = media.partition("/")[2]
    return subtype == "json" or subtype.endswith("+json")


def to_dict(event: Event) -> dict[str, Any]:
    """The event as a JSON-ready dict (attributes plus ``data`` or ``data_base64``)."""
    out = _attributes(event)
    data = event.data
    if data is None:
        return out
    if is_json_type(event.get("datacontenttype")):
        value = _json_value(data)
        if value is not _NOT_JSON:
            out[_DATA] = value
            return out
    else:
        try:
            out[_DATA] = data.decode("utf-8")
            return out
        except UnicodeDecodeError:
            pass
    _put_base64(out, data)
    return out


def to_json(event: Event) -> bytes:
    """One structured-mode JSON object (UTF-8), JSON data embedded byte-for-byte."""
    data = event.data
    if data is not None and is_json_type(event.get("datacontenttype")):
        if _json_value(data) is not _NOT_JSON:
            out = _attributes(event)
            out[_DATA] = orjson.Fragment(data)
            return orjson.dumps(out)
    return orjson.dumps(to_dict(event))


def batch_to_json(events: list[Event]) -> bytes:
    """A JSON batch (array of structured events)."""
    return orjson.dumps([orjson.Fragment(to_json(e)) for e in events])


def from_dict(obj: Any, *, where: str = "event") -> Event:
    """A validated Event from a decoded JSON object; raises InvalidEvent.

    ``where`` names the object in error messages; other than the default ``"event"`` it also
    prefixes attribute errors (e.g. ``"batch[2]: missing required attribute 'id'"``).
    """
    if not isinstance(obj, dict):
        raise InvalidEvent(f"{where} must be a JSON object, got {json_kind(obj)}")
    try:
        return _from_dict(obj)
    except InvalidEvent as exc:
        if where == "event":
            raise
        raise InvalidEvent(f"{where}: {exc.message}") from None


def from_json(body: bytes) -> Event:
    """A validated Event from one structured-mode JSON body; raises InvalidEvent.

    JSON ``data`` keeps the producer's exact bytes (see :mod:`broker.bindings.rawjson`).
    """
    obj = loads(body)
    event = from_dict(obj)
    return _keep_raw(event, obj, lambda: rawjson.object_data(body))


def batch_from_json(body: bytes) -> list[Event]:
    """Every event of a JSON batch, all or none; an empty batch is invalid."""
    items = loads(body)
    if not isinstance(items, list):
        raise InvalidEvent(f"a batch must be a JSON array, got {json_kind(items)}")
    if not items:
        raise InvalidEvent("the batch is empty")
    events = [from_dict(item, where=f"batch[{i}]") for i, item in enumerate(items)]
    if not any(_json_data(item, event) for item, event in zip(items, events, strict=True)):
        return events
    raws = rawjson.batch_data(body)
    if raws is None or len(raws) != len(events):
        return events
    return [
        Event(event.attributes, raw) if raw is not None and _json_data(item, event) else event
        for item, event, raw in zip(items, events, raws, strict=True)
    ]


def _json_data(obj: Any, event: Event) -> bool:
    """Whether ``event.data`` was re-serialized from a JSON ``data`` value (so raw bytes exist)."""
    if not isinstance(obj, dict) or obj.get(_DATA) is None or event.data is None:
        return False
    encoding = obj.get(_ENCODING)
    if isinstance(encoding, str) and encoding.lower() == "base64":  # CE 0.3: data is base64 text
        return False
    value = obj[_DATA]
    return not isinstance(value, str) or is_json_type(event.text("datacontenttype"))


def _keep_raw(event: Event, obj: Any, raw: Callable[[], bytes | None]) -> Event:
    if not _json_data(obj, event):
        return event
    data = raw()
    return event if data is None else Event(event.attributes, data)


def loads(body: bytes) -> Any:
    """Parse JSON, mapping orjson's error to InvalidEvent."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidEvent(f"body is not valid JSON: {exc}") from None


def _from_dict(obj: Mapping[str, Any]) -> Event:
    attributes = {k: v for k, v in obj.items() if k != _DATA and k != _DATA_BASE64}
    data_value = obj.get(_DATA)
    b64_value = obj.get(_DATA_BASE64)
    encoding = attributes.get(_ENCODING) if attributes.get("specversion") == "0.3" else None
    if isinstance(encoding, str) and encoding.lower() == "base64":
        del attributes[_ENCODING]
        b64_value, data_value = data_value, None
    validate(attributes)
    if data_value is not None and b64_value is not None:
        raise InvalidEvent("event has both 'data' and 'data_base64'")
    data: bytes | None = None
    if b64_value is not None:
        data = _b64decode(b64_value)
    elif data_value is not None:
        if isinstance(data_value, str) and not is_json_type(attributes.get("datacontenttype")):
            data = data_value.encode("utf-8")
        else:
            data = orjson.dumps(data_value)
    return Event(attributes, data)


def _attributes(event: Event) -> dict[str, Any]:
    """The attributes to write; a 0.3 ``datacontentencoding`` is set only by :func:`_put_base64`."""
    out = dict(event.attributes)
    if out.get("specversion") == "0.3":
        out.pop(_ENCODING, None)
    return out


def _b64decode(value: Any) -> bytes:
    if not isinstance(value, str):
        raise InvalidEvent(f"'data_base64' must be a base64 string, got {json_kind(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidEvent("'data_base64' is not valid base64") from None


def _put_base64(out: dict[str, Any], data: bytes) -> None:
    text = base64.b64encode(data).decode("ascii")
    if out.get("specversion") == "0.3":
        out[_ENCODING] = "base64"
        out[_DATA] = text
    else:
        out[_DATA_BASE64] = text


def _json_value(data: bytes) -> Any:
    """The parsed value, or _NOT_JSON when ``data`` is not JSON or is JSON ``null``.

    ``null`` counts as not JSON because ``"data": null`` reads back as "no data".
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return _NOT_JSON
    return _NOT_JSON if value is None else value
