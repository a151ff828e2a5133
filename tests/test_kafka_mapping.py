"""Kafka record -> CloudEvent, as Knative's KafkaSource maps it: one table, no broker."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest

from broker.event import AttrValue, Event
from sources.kafka_mapping import KafkaRecord, KeyType, java_time, key_value, record_to_event

NS, NAME = "shop", "orders-in"
TS = 1714557600120  # 2024-05-01T10:00:00.120Z
SOURCE = "/apis/v1/namespaces/shop/kafkasources/orders-in#orders"

Headers = Sequence[tuple[str, bytes | None]]


def record(
    *,
    key: bytes | None = b"k1",
    value: bytes | None = b'{"n":1}',
    headers: Headers | None = None,
    partition: int = 2,
    offset: int = 41,
) -> KafkaRecord:
    return KafkaRecord(
        topic="orders",
        partition=partition,
        offset=offset,
        timestamp_ms=TS,
        key=key,
        value=value,
        headers=headers or [],
    )


def wrapped(data: bytes | None = b'{"n":1}', **extra: AttrValue) -> Event:
    """What Knative builds for a record that is not a CloudEvent (partition 2, offset 41)."""
    attributes: dict[str, AttrValue] = {
        "specversion": "1.0",
        "id": "partition:2/offset:41",
        "time": "2024-05-01T10:00:00.12Z",
        "type": "dev.knative.kafka.event",
        "source": SOURCE,
        "subject": "partition:2#41",
    }
    attributes.update(extra)
    return Event(attributes, data)


BINARY: Headers = [
    ("ce_specversion", b"1.0"),
    ("ce_id", b"abc"),
    ("ce_source", b"/orders"),
    ("ce_type", b"order.created"),
    ("ce_subject", b"o-1"),
    ("ce_time", b"2024-05-01T09:00:00Z"),
    ("ce_tenant", b"acme"),
    ("content-type", b"application/json"),
    ("traceparent", b"00-1"),
]
BINARY_EVENT = Event(
    {
        "specversion": "1.0",
        "id": "abc",
        "source": "/orders",
        "type": "order.created",
        "subject": "o-1",
        "time": "2024-05-01T09:00:00Z",
        "tenant": "acme",
        "datacontenttype": "application/json",
    },
    b'{"n":1}',
)
STRUCTURED = (
    b'{"specversion":"1.0","id":"s-1","source":"/s","type":"t","datacontenttype":"application/json",'
    b'"ext":"x","data":{"a":[1,2]}}'
)
STRUCTURED_EVENT = Event(
    {
        "specversion": "1.0",
        "id": "s-1",
        "source": "/s",
        "type": "t",
        "datacontenttype": "application/json",
        "ext": "x",
    },
    b'{"a":[1,2]}',
)
MISSING_ID: Headers = [("ce_specversion", b"1.0"), ("ce_source", b"/s"), ("ce_type", b"t")]

CASES = [
    ("plain record", record(), wrapped(key="k1", partitionkey="k1")),
    (
        "plain record with headers and content type",
        record(headers=[("Content-Type", b"Application/JSON"), ("X-Trace_ID.v2", b"t-9"), ("retry", b"1")]),
        wrapped(
            key="k1",
            partitionkey="k1",
            datacontenttype="application/json",
            kafkaheaderxtraceidv2="t-9",
            kafkaheaderretry="1",
        ),
    ),
    (
        "repeated header keeps the last value, null header value is empty",
        record(key=None, headers=[("h", b"1"), ("h", b"2"), ("nil", None)]),
        wrapped(kafkaheaderh="2", kafkaheadernil=""),
    ),
    ("no key", record(key=None), wrapped()),
    ("empty key", record(key=b""), wrapped()),
    ("non-UTF-8 key", record(key=b"a\xffb"), wrapped(key="a\ufffdb", partitionkey="a\ufffdb")),
    ("null value", record(key=None, value=None), wrapped(data=None)),
    ("empty value", record(key=None, value=b""), wrapped(data=b"")),
    ("binary CloudEvent passes through", record(headers=BINARY), BINARY_EVENT),
    (
        "binary CloudEvent without value has no data",
        record(value=None, headers=[*MISSING_ID, ("ce_id", b"i")]),
        Event({"specversion": "1.0", "source": "/s", "type": "t", "id": "i"}, None),
    ),
    (
        "binary CloudEvent with empty value has no data",
        record(value=b"", headers=[*MISSING_ID, ("ce_id", b"i")]),
        Event({"specversion": "1.0", "source": "/s", "type": "t", "id": "i"}, None),
    ),
    (
        "binary CloudEvent 0.3",
        record(
            headers=[("ce_specversion", b"0.3"), ("ce_id", b"i"), ("ce_source", b"/s"), ("ce_type", b"t")]
        ),
        Event({"specversion": "0.3", "id": "i", "source": "/s", "type": "t"}, b'{"n":1}'),
    ),
    (
        "structured CloudEvent passes through",
        record(value=STRUCTURED, headers=[("content-type", b"application/cloudevents+json; charset=UTF-8")]),
        STRUCTURED_EVENT,
    ),
    (
        "malformed binary: ce_specversion without ce_id is wrapped",
        record(headers=MISSING_ID),
        wrapped(
            key="k1",
            partitionkey="k1",
            kafkaheadercespecversion="1.0",
            kafkaheadercesource="/s",
            kafkaheadercetype="t",
        ),
    ),
    (
        "malformed binary: bad ce_time is wrapped",
        record(key=None, headers=[*MISSING_ID, ("ce_id", b"i"), ("ce_time", b"yesterday")]),
        wrapped(
            kafkaheadercespecversion="1.0",
            kafkaheadercesource="/s",
            kafkaheadercetype="t",
            kafkaheaderceid="i",
            kafkaheadercetime="yesterday",
        ),
    ),
    (
        "malformed binary: unknown specversion is wrapped",
        record(key=None, headers=[("ce_specversion", b"2.0"), ("ce_id", b"i")]),
        wrapped(kafkaheadercespecversion="2.0", kafkaheaderceid="i"),
    ),
    (
        "malformed binary: invalid extension name is wrapped",
        record(key=None, headers=[*MISSING_ID, ("ce_id", b"i"), ("ce_my-ext", b"v")]),
        wrapped(
            kafkaheadercespecversion="1.0",
            kafkaheadercesource="/s",
            kafkaheadercetype="t",
            kafkaheaderceid="i",
            kafkaheadercemyext="v",
        ),
    ),
    (
        "upper-case CE_ prefix is not the binding",
        record(key=None, headers=[("CE_specversion", b"1.0"), ("CE_id", b"i")]),
        wrapped(kafkaheadercespecversion="1.0", kafkaheaderceid="i"),
    ),
    (
        "malformed structured: body not JSON is wrapped",
        record(key=None, value=b"{nope", headers=[("content-type", b"application/cloudevents+json")]),
        wrapped(data=b"{nope", datacontenttype="application/cloudevents+json"),
    ),
]


@pytest.mark.parametrize(("rec", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_record_to_event(rec: KafkaRecord, expected: Event) -> None:
    event = record_to_event(rec, namespace=NS, name=NAME)
    assert dict(event.attributes) == dict(expected.attributes)
    assert event.data == expected.data


KEYS: list[tuple[str, bytes, KeyType, AttrValue | None]] = [
    ("string", b"order-1", "string", "order-1"),
    ("int, 4 bytes", struct.pack(">i", -7), "int", -7),
    ("int, not 4 bytes falls back to string", b"123", "int", "123"),
    ("float, 4 bytes", struct.pack(">f", 0.1), "float", "0.1"),
    ("float, 8 bytes", struct.pack(">d", 1e7), "float", "1.0E7"),
    ("float, 8 bytes small", struct.pack(">d", 2.5e-4), "float", "2.5E-4"),
    ("float, 8 bytes plain", struct.pack(">d", 1234.5), "float", "1234.5"),
    ("float, integral", struct.pack(">d", 100.0), "float", "100.0"),
    ("float, other length falls back to string", b"1.5", "float", "1.5"),
    ("byte-array is base64", b"\x00\xff", "byte-array", "AP8="),
    ("empty key is no key", b"", "int", None),
]


@pytest.mark.parametrize(("raw", "key_type", "expected"), [k[1:] for k in KEYS], ids=[k[0] for k in KEYS])
def test_key_types(raw: bytes, key_type: KeyType, expected: AttrValue | None) -> None:
    assert key_value(raw, key_type) == expected


def test_key_type_reaches_the_event() -> None:
    event = record_to_event(record(key=struct.pack(">i", 42)), namespace=NS, name=NAME, key_type="int")
    assert event.get("key") == 42
    assert event.get("partitionkey") == 42


@pytest.mark.parametrize(
    ("millis", "text"),
    [
        (1714557600000, "2024-05-01T10:00:00Z"),
        (1714557600120, "2024-05-01T10:00:00.12Z"),
        (1714557600005, "2024-05-01T10:00:00.005Z"),
        (1714557600999, "2024-05-01T10:00:00.999Z"),
        (0, "1970-01-01T00:00:00Z"),
    ],
)
def test_time_is_written_as_java_does(millis: int, text: str) -> None:
    assert java_time(millis) == text
