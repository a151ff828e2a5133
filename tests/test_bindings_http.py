"""The strict CloudEvents HTTP codec: header encoding, modes, validation, JSON format, SDK interop."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import http as sdk_http
from cloudevents.core.v03.event import CloudEvent as SdkEventV03
from cloudevents.core.v1.event import CloudEvent as SdkEvent

from broker.bindings import http, json_format
from broker.bindings.headers import decode_value, encode_value
from broker.bindings.sdk import from_sdk, to_sdk
from broker.bindings.validate import is_rfc3339
from broker.errors import InvalidEvent
from broker.event import Event

BASE = {"specversion": "1.0", "id": "e-1", "source": "/orders", "type": "com.example.order.created"}
BASE_HEADERS = {f"ce-{k}": v for k, v in BASE.items()}


def structured(obj: Any) -> tuple[dict[str, str], bytes]:
    return {"content-type": "application/cloudevents+json"}, orjson.dumps(obj)


def decode_one(headers: Mapping[str, str], body: bytes = b"") -> Event:
    events = http.decode(headers, body)
    assert len(events) == 1
    return events[0]


# --- header values -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "wire"),
    [
        ("plain/ASCII:?=&#+", "plain/ASCII:?=&#+"),
        ("Euro € 😀", "Euro%20%E2%82%AC%20%F0%9F%98%80"),
        ('say "hi"', "say%20%22hi%22"),
        ("100%", "100%25"),
        ("tab\there", "tab%09here"),
        ("del\x7f", "del%7F"),
        ("é", "%C3%A9"),
        ("", ""),
    ],
)
def test_header_value_round_trip(text: str, wire: str) -> None:
    assert encode_value(text) == wire
    assert decode_value("ce-x", wire) == text


@pytest.mark.parametrize(
    ("wire", "text"),
    [
        ("%e2%82%ac", "€"),  # lower-case hex
        ("%41%42c", "ABc"),  # unnecessary encoding
        ('"hello world"', "hello world"),  # RFC 7230 quoted-string
        ('"a\\"b\\\\c"', 'a"b\\c'),  # quoted-pair escapes
        ('"%20x"', " x"),  # quoted-string first, then percent-decoding
        ("%2541", "%41"),  # exactly one round of decoding
        ("€".encode().decode("latin-1"), "€"),  # raw UTF-8 bytes as an ASGI server hands them over
        ("€", "€"),  # raw UTF-8 as aiohttp hands it over
        ('"', '"'),  # a lone quote is not a quoted-string
    ],
)
def test_header_value_decoding_is_lenient_where_the_binding_says(wire: str, text: str) -> None:
    assert decode_value("ce-x", wire) == text


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        ("%C0%A0", "header ce-subject: invalid UTF-8 after percent-decoding"),  # overlong encoding
        ("%FF", "invalid UTF-8"),
        ("%E2%82", "invalid UTF-8"),  # truncated sequence
        ("\udc80", "invalid UTF-8"),  # undecodable byte as aiohttp's surrogateescape hands it over
        ("%G1", "header ce-subject: malformed percent-escape"),
        ("abc%", "malformed percent-escape"),
        ("%4", "malformed percent-escape"),
        ('"a"b"', "unescaped '\"' inside a quoted-string"),
        ('"ab\\"', "lone backslash"),
    ],
)
def test_header_value_decoding_rejects(wire: str, message: str) -> None:
    with pytest.raises(InvalidEvent, match=_literal(message)):
        decode_value("ce-subject", wire)
    with pytest.raises(InvalidEvent, match=_literal(message)):
        http.decode({**BASE_HEADERS, "ce-subject": wire}, b"")


# --- content mode detection ------------------------------------------------------------------

EVENT_JSON = orjson.dumps({**BASE, "id": "from-body"})


@pytest.mark.parametrize(
    ("content_type", "body", "ids"),
    [
        ("application/cloudevents+json", EVENT_JSON, ["from-body"]),
        ("Application/CloudEvents+JSON; charset=UTF-8", EVENT_JSON, ["from-body"]),
        (' application/cloudevents+json;charset="utf-8"', EVENT_JSON, ["from-body"]),
        (
            "application/cloudevents-batch+json",
            b"[" + EVENT_JSON + b"," + EVENT_JSON + b"]",
            ["from-body"] * 2,
        ),
        ("application/json", b"{}", ["e-1"]),  # binary: ce- headers win, body is data
        (None, b"", ["e-1"]),
    ],
)
def test_mode_detection_uses_content_type_only(content_type: str | None, body: bytes, ids: list[str]) -> None:
    headers = dict(BASE_HEADERS)  # ce- headers present in every case, as the binding allows
    if content_type is not None:
        headers["content-type"] = content_type
    assert [e.id for e in http.decode(headers, body)] == ids


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        ("application/cloudevents+avro", "unsupported event format 'application/cloudevents+avro'"),
        ("application/cloudevents", "unsupported event format 'application/cloudevents'"),
        ("application/cloudevents-batch+avro", "unsupported event format"),
        ("application/cloudevents+json; charset=iso-8859-1", "unsupported charset"),
    ],
)
def test_unsupported_structured_formats(content_type: str, message: str) -> None:
    with pytest.raises(InvalidEvent, match=_literal(message)):
        http.decode({**BASE_HEADERS, "content-type": content_type}, EVENT_JSON)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"content-type": "application/cloudevents+json"}, True),
        ({"content-type": "APPLICATION/CLOUDEVENTS-BATCH+JSON"}, True),
        ({"ce-specversion": "1.0", "content-type": "text/plain"}, True),
        ({"content-type": "application/json"}, False),
        ({}, False),
        ({"ce-id": "x"}, False),
    ],
)
def test_has_event(headers: dict[str, str], expected: bool) -> None:
    assert http.has_event(headers) is expected


# --- validation ---------------------------------------------------------------------------------

DROP = object()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": DROP}, "missing required attribute 'id'"),
        ({"source": DROP}, "missing required attribute 'source'"),
        ({"type": DROP}, "missing required attribute 'type'"),
        ({"specversion": DROP}, "missing required attribute 'specversion'"),
        ({"id": ""}, "attribute 'id' must not be empty"),
        ({"specversion": "2.0"}, "unsupported specversion '2.0'"),
        ({"time": "yesterday"}, "attribute 'time' is not an RFC 3339 timestamp: 'yesterday'"),
        ({"time": "2023-02-29T00:00:00Z"}, "not an RFC 3339 timestamp"),
        ({"time": "2024-01-01 00:00:00Z"}, "not an RFC 3339 timestamp"),
        ({"time": "2024-01-01T00:00:00"}, "not an RFC 3339 timestamp"),
        ({"dataschema": "not a uri"}, "attribute 'dataschema' is not an absolute URI: 'not a uri'"),
        ({"subject": ""}, "attribute 'subject' must not be empty"),
        ({"my-ext": "x"}, "attribute name 'my-ext' is invalid"),
        ({"data": "x"}, "attribute name 'data' is reserved"),
        ({"datacontenttype": "x"}, "header ce-datacontenttype is not allowed in binary mode"),
    ],
)
def test_binary_validation(changes: dict[str, Any], message: str) -> None:
    headers = _apply(BASE_HEADERS, {f"ce-{k}": v for k, v in changes.items()})
    with pytest.raises(InvalidEvent, match=_literal(message)):
        http.decode(headers, b"")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": DROP}, "missing required attribute 'id'"),
        ({"id": 7}, "attribute 'id' must be a string, got integer"),
        ({"id": None}, "attribute 'id' must be a string, got null"),
        ({"specversion": 1.0}, "attribute 'specversion' must be a string, got number"),
        ({"specversion": "0.2"}, "unsupported specversion '0.2'"),
        ({"datacontenttype": "json"}, "attribute 'datacontenttype' is not a media type"),
        ({"subject": True}, "attribute 'subject' must be a string, got boolean"),
        ({"MyExt": "x"}, "attribute name 'MyExt' is invalid"),
        ({"ext": {"a": 1}}, "attribute 'ext' must be a string, integer or boolean, got object"),
        ({"ext": [1]}, "got array"),
        ({"ext": None}, "got null"),
        ({"ext": 1.5}, "got number"),
        ({"ext": 2**31}, "outside the 32-bit signed range"),
        ({"specversion": "0.3", "schemaurl": "::"}, "attribute 'schemaurl' is not an absolute URI"),
        ({"data": 1, "data_base64": "AA=="}, "event has both 'data' and 'data_base64'"),
        ({"data_base64": "***"}, "'data_base64' is not valid base64"),
        ({"data_base64": 5}, "'data_base64' must be a base64 string, got integer"),
    ],
)
def test_structured_validation(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidEvent, match=_literal(message)):
        http.decode(*structured(_apply(BASE, changes)))


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1]", b'"x"', b'{"id": "\xc0\xa0"}'],
    ids=["empty", "garbage", "array", "str", "utf8"],
)
def test_structured_garbage_is_invalid(body: bytes) -> None:
    with pytest.raises(InvalidEvent):
        http.decode({"content-type": "application/cloudevents+json"}, body)


@pytest.mark.parametrize(
    "value",
    [
        "1985-04-12T23:20:50.52Z",
        "2024-02-29T23:59:60.123456789+05:30",
        "2024-01-01t00:00:00z",
        "2024-12-31T00:00:00-00:00",
    ],
)
def test_rfc3339_accepts(value: str) -> None:
    assert is_rfc3339(value)


@pytest.mark.parametrize(
    "value",
    [
        "2024-04-31T00:00:00Z",
        "2024-01-01T24:00:00Z",
        "2024-01-01T00:00:61Z",
        "2024-1-01T00:00:00Z",
        "2024-01-01T00:00:00+24:00",
    ],
)
def test_rfc3339_rejects(value: str) -> None:
    assert not is_rfc3339(value)


def test_typed_extensions_are_accepted_in_structured_mode() -> None:
    event = decode_one(*structured({**BASE, "count": 3, "flag": False, "knativebrokerttl": 255}))
    assert event.get("count") == 3 and event.get("flag") is False
    headers, _ = http.encode_binary(event)
    assert (headers["ce-count"], headers["ce-flag"], headers["ce-knativebrokerttl"]) == ("3", "false", "255")


# --- JSON format: data -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("members", "data"),
    [
        ({"data": {"a": [1, 2]}}, b'{"a":[1,2]}'),
        ({"datacontenttype": "application/json", "data": "hi"}, b'"hi"'),
        ({"datacontenttype": "application/vnd.x+json", "data": 5}, b"5"),
        ({"datacontenttype": "text/plain", "data": "héllo"}, "héllo".encode()),
        ({"datacontenttype": "text/plain", "data": [1]}, b"[1]"),
        ({"data_base64": "AAEC/w=="}, b"\x00\x01\x02\xff"),
        ({"data": None}, None),
        ({}, None),
        ({"specversion": "0.3", "datacontentencoding": "Base64", "data": "AAEC/w=="}, b"\x00\x01\x02\xff"),
    ],
)
def test_structured_data(members: dict[str, Any], data: bytes | None) -> None:
    event = decode_one(*structured({**BASE, **members}))
    assert event.data == data
    assert "datacontentencoding" not in event.attributes


@pytest.mark.parametrize(
    ("attributes", "data", "member", "value"),
    [
        ({}, b'{"a":1}', "data", {"a": 1}),
        ({"datacontenttype": "application/json"}, b"not json", "data_base64", "bm90IGpzb24="),
        ({"datacontenttype": "application/json"}, b"null", "data_base64", "bnVsbA=="),
        ({"datacontenttype": "text/plain"}, b"caf\xc3\xa9", "data", "café"),
        ({"datacontenttype": "text/plain"}, b"\xff", "data_base64", "/w=="),
        ({"datacontenttype": "application/octet-stream"}, b"", "data", ""),
        ({"specversion": "0.3", "datacontenttype": "image/png"}, b"\xff", "data", "/w=="),
    ],
)
def test_to_dict_data(attributes: dict[str, Any], data: bytes, member: str, value: Any) -> None:
    event = Event({**BASE, **attributes}, data)
    out = json_format.to_dict(event)
    assert out[member] == value
    assert ("datacontentencoding" in out) == (attributes.get("specversion") == "0.3")
    assert decode_one(*structured(out)) == event
    assert json_format.from_dict(orjson.loads(json_format.to_json(event))) == event


def test_v03_datacontentencoding_describes_only_the_json() -> None:
    event = Event(
        {**BASE, "specversion": "0.3", "datacontentencoding": "base64", "datacontenttype": "text/plain"},
        b"hi",
    )
    out = orjson.loads(json_format.to_json(event))
    assert "datacontentencoding" not in out and out["data"] == "hi"
    assert json_format.from_dict(out).data == b"hi"


def test_to_json_embeds_json_data_byte_for_byte() -> None:
    data = b'{ "spaced" : [1, 2] }'
    body = json_format.to_json(Event(dict(BASE), data))
    assert data in body


def test_from_dict_where_names_the_object() -> None:
    with pytest.raises(InvalidEvent, match=_literal("dead letter 3: missing required attribute 'id'")):
        json_format.from_dict(_apply(BASE, {"id": DROP}), where="dead letter 3")
    with pytest.raises(InvalidEvent, match=_literal("record must be a JSON object, got array")):
        json_format.from_dict([], where="record")


# --- batch ----------------------------------------------------------------------------------------

BATCH = {"content-type": "application/cloudevents-batch+json"}


def test_batch_decodes_every_event_in_order() -> None:
    items = [{**BASE, "id": str(i), "data": i} for i in range(3)]
    events = http.decode(BATCH, orjson.dumps(items))
    assert [(e.id, e.data) for e in events] == [("0", b"0"), ("1", b"1"), ("2", b"2")]
    headers, body = http.encode_batch(events)
    assert http.decode(headers, body) == events


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[]", "the batch is empty"),
        (b"{}", "a batch must be a JSON array, got object"),
        (b"[", "body is not valid JSON"),
        (orjson.dumps([BASE, {**BASE, "id": ""}]), "batch[1]: attribute 'id' must not be empty"),
        (orjson.dumps([BASE, BASE, 3]), "batch[2] must be a JSON object, got integer"),
    ],
)
def test_batch_is_all_or_nothing(body: bytes, message: str) -> None:
    with pytest.raises(InvalidEvent, match=_literal(message)):
        http.decode(BATCH, body)


# --- binary mode and round trips ----------------------------------------------------------------


def test_binary_data_and_content_type() -> None:
    body = os.urandom(1024)
    event = decode_one({**BASE_HEADERS, "content-type": "application/octet-stream"}, body)
    assert event.data == body and event.get("datacontenttype") == "application/octet-stream"
    assert decode_one(dict(BASE_HEADERS), b"").data is None
    assert decode_one({**BASE_HEADERS, "content-type": "text/plain"}, b"").data == b""


def test_encode_binary() -> None:
    event = Event({**BASE, "subject": "Euro € 😀", "datacontenttype": "text/plain", "n": 1}, b"x")
    headers, body = http.encode_binary(event)
    assert headers == {
        **BASE_HEADERS,
        "ce-subject": "Euro%20%E2%82%AC%20%F0%9F%98%80",
        "content-type": "text/plain",
        "ce-n": "1",
    }
    assert body == b"x"
    assert http.encode_binary(Event(dict(BASE))) == (BASE_HEADERS, b"")


ROUND_TRIP_EVENTS = [
    Event(dict(BASE)),
    Event({**BASE, "datacontenttype": "application/json"}, b'{"a":1}'),
    Event({**BASE, "datacontenttype": "application/octet-stream"}, bytes(range(256))),
    Event({**BASE, "datacontenttype": "text/plain; charset=utf-8", "subject": 'q "%" ü\t'}, "ü".encode()),
    Event({**BASE, "time": "2024-05-01T12:00:00.123456789Z", "dataschema": "https://x/s", "myext": ""}),
    Event({**BASE, "specversion": "0.3", "schemaurl": "urn:x", "datacontenttype": "image/png"}, b"\x89PNG"),
]


@pytest.mark.parametrize("event", ROUND_TRIP_EVENTS)
def test_round_trips(event: Event) -> None:
    via_binary = decode_one(*http.encode_binary(event))
    via_structured = decode_one(*http.encode_structured(event))
    assert via_binary == event
    assert via_structured == event
    assert decode_one(*http.encode_structured(via_binary)) == event
    assert decode_one(*http.encode_binary(via_structured)) == event


def test_structured_to_binary_to_structured_keeps_data_bytes() -> None:
    first = decode_one(*structured({**BASE, "data": {"k": "v", "n": [1, 2.5, None]}}))
    again = decode_one(*http.encode_structured(decode_one(*http.encode_binary(first))))
    assert again == first


# --- official SDK interop ---------------------------------------------------------------------

SDK_ATTRIBUTES: dict[str, Any] = {
    **BASE,
    "subject": "Euro € 😀 / 100%",
    "time": datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC),
    "datacontenttype": "application/json",
    "dataschema": "https://example.com/schema",
    "tenant": "acme",
}


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_sdk_encoded_events_decode_with_ours(mode: str) -> None:
    sdk_event = SdkEvent(dict(SDK_ATTRIBUTES), {"order": 42, "items": ["a", "b"]})
    encode = sdk_http.to_binary_event if mode == "binary" else sdk_http.to_structured_event
    message = encode(sdk_event)
    event = decode_one({k.lower(): v for k, v in message.headers.items()}, message.body)
    assert event.get("subject") == "Euro € 😀 / 100%"
    assert event.get("time") == "2024-05-01T12:00:00.123456Z"
    assert event.get("tenant") == "acme" and event.id == "e-1"
    assert event.data is not None and orjson.loads(event.data) == {"order": 42, "items": ["a", "b"]}


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_our_events_decode_with_the_sdk(mode: str) -> None:
    event = Event(
        {
            **BASE,
            "subject": "Euro € 😀",
            "time": "2024-05-01T12:00:00Z",
            "datacontenttype": "application/json",
        },
        b'{"order":42}',
    )
    if mode == "binary":
        headers, body = http.encode_binary(event)
        sdk_event = sdk_http.from_binary_event(sdk_http.HTTPMessage(headers=dict(headers), body=body))
    else:
        headers, body = http.encode_structured(event)
        sdk_event = sdk_http.from_structured_event(sdk_http.HTTPMessage(headers=dict(headers), body=body))
    assert sdk_event.get_subject() == "Euro € 😀"
    assert sdk_event.get_time() == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert sdk_event.get_data() == {"order": 42}
    assert from_sdk(sdk_event) == Event(event.attributes, b'{"order":42}')


def test_sdk_v03_interop() -> None:
    sdk_event = SdkEventV03(
        {**BASE, "specversion": "0.3", "time": datetime(2024, 1, 1, tzinfo=UTC)}, b"\x00\xff"
    )
    message = sdk_http.to_structured_event(sdk_event)
    event = decode_one(dict(message.headers), message.body)
    assert event.specversion == "0.3" and event.data == b"\x00\xff"
    headers, body = http.encode_binary(event)
    message = sdk_http.HTTPMessage(headers=dict(headers), body=body)
    assert sdk_http.from_binary_event(message).get_data() == b"\x00\xff"


def test_to_sdk_and_back_keeps_the_event() -> None:
    event = Event({**BASE, "time": "2024-05-01T12:00:00.5Z", "flag": True, "count": 3}, b"\x00raw")
    sdk_event = to_sdk(event)
    assert sdk_event.get_data() == b"\x00raw" and sdk_event.get_extension("count") == 3
    assert from_sdk(sdk_event) == Event(
        {**event.attributes, "time": "2024-05-01T12:00:00.500000Z"}, b"\x00raw"
    )


def test_sdk_decoder_is_lenient_where_ours_is_strict() -> None:
    # Why Weir has its own codec: the SDK turns an overlong UTF-8 sequence into U+FFFD.
    message = sdk_http.HTTPMessage(headers={**BASE_HEADERS, "ce-subject": "%C0%A0"}, body=b"")
    assert sdk_http.from_binary_event(message).get_subject() == "\ufffd\ufffd"
    with pytest.raises(InvalidEvent):
        http.decode(dict(message.headers), b"")


# --- helpers -----------------------------------------------------------------------------------


def _apply(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = {**base, **changes}
    return {k: v for k, v in out.items() if v is not DROP}


def _literal(text: str) -> str:
    return re.escape(text)


RAW_DATA = [
    b'{"total": 12,  "items": [1, 2.50]}',
    b"1e3",
    b'"caf\\u00e9"',
    b'[ true , null ]',
    b'{"nested": {"deep": {"x": "}"}}}',
]


@pytest.mark.parametrize("raw", RAW_DATA)
def test_structured_json_data_is_kept_byte_for_byte(raw: bytes) -> None:
    body = b'{"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": ' + raw + b"}"
    (event,) = http.decode({"content-type": "application/cloudevents+json"}, body)
    assert event.data == raw
    _, out = http.encode_binary(event)
    assert out == raw


def test_batch_json_data_is_kept_byte_for_byte() -> None:
    items = [
        b'{"specversion":"1.0","id":"%d","source":"/s","type":"t","data": %s}' % (i, raw)
        for i, raw in enumerate(RAW_DATA)
    ]
    text = b'{"specversion":"1.0","id":"x","source":"/s","type":"t","datacontenttype":"text/plain",'
    text += b'"data":"a b"}'
    body = b"[ " + b" ,\n ".join([*items, text]) + b" ]"
    events = http.decode({"content-type": "application/cloudevents-batch+json"}, body)
    assert [e.data for e in events] == [*RAW_DATA, b"a b"]


def test_binary_encoding_is_worked_out_once_per_event() -> None:
    calls: list[Event] = []

    def counted(event: Event) -> int:
        calls.append(event)
        return len(event.attributes)

    event = Event({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}, b"x")
    twin = Event(dict(event.attributes), b"x")
    assert http.encode_binary(event) is http.encode_binary(event)
    assert event.derived(counted) == event.derived(counted) == 4
    assert calls == [event]
    # The memo is not part of the value: an equal event without it is still equal.
    assert event == twin and repr(event) == repr(twin)
    assert twin.derived(counted) == 4 and len(calls) == 2
