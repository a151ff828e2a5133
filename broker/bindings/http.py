"""CloudEvents over HTTP: binary, structured and batch content modes (HTTP binding v1.0.2).

Mode detection looks only at ``Content-Type`` (case-insensitive): ``application/cloudevents-batch``
→ batch, ``application/cloudevents`` → structured, anything else (or none) → binary. Only the JSON
event format is supported; ``application/cloudevents+avro`` and the like are refused as an
unsupported event format rather than misread as binary data.

Binary mode: each attribute is a ``ce-<name>`` header (value percent-encoded, see
:mod:`broker.bindings.headers`) except ``datacontenttype``, which is ``Content-Type``; a
``ce-datacontenttype`` header is refused. The body is the data, byte-for-byte; an empty body
without ``Content-Type`` means "no data". Typed extension values (integers, booleans from
structured JSON) are sent in their canonical string form.

Header mappings here always use lower-case names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from broker.bindings.headers import decode_value, encode_value
from broker.bindings.json_format import batch_from_json, batch_to_json, from_json, to_json
from broker.bindings.validate import validate
from broker.errors import InvalidEvent
from broker.event import AttrValue, Event, canonical

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=UTF-8"
BATCH_CONTENT_TYPE = "application/cloudevents-batch+json; charset=UTF-8"

_CE = "ce-"
_CE_MEDIA = "application/cloudevents"
_BATCH_MEDIA = "application/cloudevents-batch"
_DATACONTENTTYPE = "datacontenttype"


def decode(headers: Mapping[str, str], body: bytes) -> list[Event]:
    """The events a request or response carries: one (binary, structured) or a batch.

    A batch is all-or-nothing: any invalid element raises InvalidEvent naming its index, and an
    empty batch is invalid. Raises InvalidEvent with a message saying what is wrong.
    """
    content_type = headers.get("content-type")
    if content_type is not None:
        lowered = content_type.lower().lstrip()
        if lowered.startswith(_CE_MEDIA):
            media, _, params = lowered.partition(";")
            media = media.strip()
            _check_charset(params)
            if lowered.startswith(_BATCH_MEDIA):
                if media != _BATCH_MEDIA + "+json":
                    raise InvalidEvent(f"unsupported event format {media!r} (expected {_BATCH_MEDIA}+json)")
                return batch_from_json(body)
            if media != _CE_MEDIA + "+json":
                raise InvalidEvent(f"unsupported event format {media!r} (expected {_CE_MEDIA}+json)")
            return [from_json(body)]
    return [_decode_binary(headers, content_type, body)]


def has_event(headers: Mapping[str, str]) -> bool:
    """Whether a response claims to carry a CloudEvent (CE media type or ``ce-specversion``)."""
    content_type = headers.get("content-type")
    if content_type is not None and content_type.lower().lstrip().startswith(_CE_MEDIA):
        return True
    return "ce-specversion" in headers


def encode_binary(event: Event) -> tuple[Mapping[str, str], bytes]:
    """Binary-mode headers (``ce-*`` and ``content-type`` when the event has a datacontenttype) and body.

    Worked out once per event (see :meth:`Event.derived`); the headers must not be mutated.
    """
    return event.derived(_encode_binary)


def _encode_binary(event: Event) -> tuple[Mapping[str, str], bytes]:
    headers: dict[str, str] = {}
    for name, value in event.attributes.items():
        if name == _DATACONTENTTYPE:
            headers["content-type"] = canonical(value)
        else:
            headers[_CE + name] = encode_value(canonical(value))
    return headers, event.data if event.data is not None else b""


def encode_structured(event: Event) -> tuple[Mapping[str, str], bytes]:
    """Structured-mode headers (``application/cloudevents+json; charset=UTF-8``) and JSON body."""
    return {"content-type": STRUCTURED_CONTENT_TYPE}, to_json(event)


def encode_batch(events: Sequence[Event]) -> tuple[Mapping[str, str], bytes]:
    """Batch-mode headers (``application/cloudevents-batch+json; charset=UTF-8``) and JSON array body."""
    return {"content-type": BATCH_CONTENT_TYPE}, batch_to_json(list(events))


def _decode_binary(headers: Mapping[str, str], content_type: str | None, body: bytes) -> Event:
    attributes: dict[str, AttrValue] = {}
    for name, value in headers.items():
        if not name.startswith(_CE):
            continue
        attribute = name[3:]
        if attribute == _DATACONTENTTYPE:
            raise InvalidEvent(
                "header ce-datacontenttype is not allowed in binary mode (Content-Type carries it)"
            )
        # Most values need no decoding; skipping the call is measurable on the hot path.
        if "%" in value or value[:1] == '"' or not value.isascii():
            value = decode_value(name, value)
        attributes[attribute] = value
    if "specversion" not in attributes:
        raise InvalidEvent(
            "missing required attribute 'specversion' (binary mode: header ce-specversion; "
            "structured mode: Content-Type application/cloudevents+json)"
        )
    if content_type is not None:
        attributes[_DATACONTENTTYPE] = content_type.strip()
    validate(attributes)
    data = body if body or content_type is not None else None
    return Event(attributes, data)


def _check_charset(params: str) -> None:
    """Refuse a structured/batch body declared in a charset other than UTF-8 (JSON is UTF-8)."""
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip() == "charset" and value.strip().strip('"') not in ("utf-8", "utf8"):
            raise InvalidEvent(f"unsupported charset {value.strip()!r} (JSON events must be UTF-8)")
