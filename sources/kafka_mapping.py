"""Kafka records into CloudEvents, as Knative's KafkaSource maps them (eventing-kafka-broker).

Followed: the dispatcher's ``CloudEventDeserializer``, ``NullCloudEventInterceptor``,
``InvalidCloudEventInterceptor`` and ``KeyDeserializer`` (``data-plane/dispatcher/.../consumer``,
main branch, 2024-2026), on top of the CloudEvents Java SDK's Kafka binding.

1. A record that *is* a CloudEvent passes through unchanged:

   * structured: header ``content-type`` (exact name, as Kafka's ``lastHeader``) whose media type
     is ``application/cloudevents+json``; the value is the JSON event;
   * binary: header ``ce_specversion`` present; every header named ``ce_<attr>`` sets ``<attr>``
     (lower-cased), header ``content-type`` sets ``datacontenttype``, the value is the data (a
     null or empty value means no data). Other headers are not carried.

2. Anything else, including a record that claims to be a CloudEvent but breaks a rule (for
   example ``ce_specversion`` without ``ce_id``, a bad ``ce_time``, unparsable structured JSON),
   is *wrapped*: Knative's deserializer catches the failure and the interceptor builds

   * ``id`` ``partition:<p>/offset:<o>``, ``type`` ``dev.knative.kafka.event``, ``source``
     ``/apis/v1/namespaces/<ns>/kafkasources/<name>#<topic>``, ``subject`` ``partition:<p>#<o>``;
   * ``time``: the record timestamp (milliseconds) in UTC, written as ``java.time`` writes it
     (``2024-05-01T10:00:00.12Z``: fraction without trailing zeros, none when zero);
   * ``key`` and ``partitionkey``: the record key (absent or empty key: neither is set);
   * ``datacontenttype``: the lower-cased ``content-type`` header (any letter case), if present;
   * ``kafkaheader<name>`` for every other header, ``<name>`` lower-cased with everything
     outside ``[a-z0-9]`` removed, the value decoded as UTF-8; a repeated header keeps its last
     value; a null header value becomes ``""`` (Java would fail on it);
   * data: the record value (a null value means no data).

Keys follow the label ``kafkasources.sources.knative.dev/key-type``: ``string`` (default; UTF-8,
invalid bytes become U+FFFD exactly as Java's ``new String(bytes, UTF_8)``), ``int`` (4 bytes
big-endian, else the string rule), ``float`` (4 or 8 bytes IEEE-754 big-endian, else the string
rule; written as Java's ``Float.toString`` / ``Double.toString`` would), ``byte-array`` (the
bytes, base64 as CloudEvents writes a Binary attribute).

Not verified against a running Knative: the exact ``time`` text and the float key text are
derived from the ``java.time`` and ``java.lang`` documentation, not observed.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal

from broker.bindings.json_format import from_json
from broker.bindings.validate import validate
from broker.errors import InvalidEvent
from broker.event import AttrValue, Event

KeyType = Literal["string", "int", "float", "byte-array"]
KEY_TYPES: tuple[KeyType, ...] = ("string", "int", "float", "byte-array")
KEY_TYPE_LABEL = "kafkasources.sources.knative.dev/key-type"
KAFKA_EVENT_TYPE = "dev.knative.kafka.event"

_STRUCTURED_MEDIA = "application/cloudevents+json"
_CE_PREFIX = "ce_"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True, kw_only=True)
class KafkaRecord:
    """One consumed record. ``timestamp_ms`` is milliseconds since the epoch."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None = None
    value: bytes | None = None
    headers: Sequence[tuple[str, bytes | None]] = ()


def record_to_event(record: KafkaRecord, *, namespace: str, name: str, key_type: KeyType = "string") -> Event:
    """The CloudEvent a KafkaSource ``namespace/name`` delivers for ``record``; never raises."""
    event = _as_cloudevent(record)
    return event if event is not None else _wrap(record, namespace, name, key_type)


def _as_cloudevent(record: KafkaRecord) -> Event | None:
    """The event the record carries per the Kafka protocol binding, ``None`` if it carries none."""
    content_type = _last_header(record.headers, "content-type")
    if content_type is not None and _media_type(content_type) == _STRUCTURED_MEDIA:
        try:
            return from_json(record.value or b"")
        except InvalidEvent:
            return None
    if _last_header(record.headers, _CE_PREFIX + "specversion") is None:
        return None
    attributes: dict[str, AttrValue] = {}
    for header, raw in record.headers:
        if header == "content-type":
            attributes["datacontenttype"] = _text(raw)
        elif len(header) > len(_CE_PREFIX) and header.startswith(_CE_PREFIX):
            attributes[header[len(_CE_PREFIX) :].lower()] = _text(raw)
    try:
        validate(attributes)
    except InvalidEvent:
        return None
    return Event(attributes, record.value or None)


def _wrap(record: KafkaRecord, namespace: str, name: str, key_type: KeyType) -> Event:
    p, o = record.partition, record.offset
    attributes: dict[str, AttrValue] = {
        "specversion": "1.0",
        "id": f"partition:{p}/offset:{o}",
        "time": java_time(record.timestamp_ms),
        "type": KAFKA_EVENT_TYPE,
        "source": f"/apis/v1/namespaces/{namespace}/kafkasources/{name}#{record.topic}",
        "subject": f"partition:{p}#{o}",
    }
    key = key_value(record.key, key_type)
    if key is not None:
        attributes["partitionkey"] = key
        attributes["key"] = key
    content_type: str | None = None
    for header, raw in record.headers:
        if header.lower() == "content-type":
            content_type = _text(raw)
        else:
            attributes["kafkaheader" + header_suffix(header)] = _text(raw)
    if content_type is not None:
        attributes["datacontenttype"] = content_type.lower()
    return Event(attributes, record.value)


def header_suffix(header: str) -> str:
    """``header`` lower-cased (character by character, as Java) keeping only ``[a-z0-9]``."""
    lowered = "".join(ch.lower() for ch in header)
    return "".join(c for c in lowered if "a" <= c <= "z" or "0" <= c <= "9")


def key_value(key: bytes | None, key_type: KeyType) -> AttrValue | None:
    """The ``key``/``partitionkey`` extension value for a record key, ``None`` when absent/empty."""
    if not key:
        return None
    if key_type == "int" and len(key) == 4:
        return int.from_bytes(key, "big", signed=True)
    if key_type == "float" and len(key) in (4, 8):
        if len(key) == 4:
            return _java_float(struct.unpack(">f", key)[0], single=True)
        return _java_float(struct.unpack(">d", key)[0], single=False)
    if key_type == "byte-array":
        return base64.b64encode(key).decode("ascii")
    return key.decode("utf-8", errors="replace")


def java_time(timestamp_ms: int) -> str:
    """``timestamp_ms`` as ``java.time``'s ``ISO_OFFSET_DATE_TIME`` writes it in UTC."""
    seconds, millis = divmod(timestamp_ms, 1000)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if millis:
        text += "." + f"{millis:03d}".rstrip("0")
    return text + "Z"


def _java_float(value: float, *, single: bool) -> str:
    """``Float.toString`` / ``Double.toString`` (JDK 19+: shortest digits that round-trip)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0.0"
    _, digit_tuple, exp = Decimal(_shortest(abs(value), single=single)).normalize().as_tuple()
    assert isinstance(exp, int)  # finite: NaN and infinities are handled above
    digits = "".join(map(str, digit_tuple))
    exponent = len(digits) + exp - 1
    if 1e-3 <= abs(value) < 1e7:
        point = exponent + 1
        if point <= 0:
            return f"{sign}0.{'0' * -point}{digits}"
        return f"{sign}{digits[:point].ljust(point, '0')}.{digits[point:] or '0'}"
    return f"{sign}{digits[0]}.{digits[1:] or '0'}E{exponent}"


def _shortest(value: float, *, single: bool) -> str:
    """The closest decimal with the fewest digits (at least two, as the JDK 19+ ``toString``
    specification requires) that reads back as ``value``, in binary32 when ``single``."""
    for digits in range(2, 18):
        text = f"{value:.{digits - 1}e}"
        try:
            back = struct.unpack(">f", struct.pack(">f", float(text)))[0] if single else float(text)
        except OverflowError:  # rounded past the largest binary32 value
            continue
        if back == value:
            return text
    return repr(value)


def _last_header(headers: Sequence[tuple[str, bytes | None]], name: str) -> bytes | None:
    found: bytes | None = None
    for header, raw in headers:
        if header == name:
            found = raw if raw is not None else b""
    return found


def _media_type(raw: bytes) -> str:
    return _text(raw).split(";", 1)[0].strip().lower()


def _text(raw: bytes | None) -> str:
    return "" if raw is None else raw.decode("utf-8", errors="replace")
