"""Byte layouts of the NATS store's messages, and how entry seqs map to stream sequences.

Entry seqs
----------
One append is one JetStream message holding all its events (at most :data:`SCALE`). Event
``i`` (0-based) of ``n`` in the message at stream sequence ``m`` gets the entry seq
``m * SCALE - (n - 1 - i)``: the last event of a message has seq ``m * SCALE``, so the head of
a log is its stream's last sequence times :data:`SCALE` (no message read), and every seq of
message ``m`` lies in ``((m - 1) * SCALE, m * SCALE]``.

Layouts (big-endian)
--------------------
* event: ``u32`` attribute JSON length, the attributes as orjson JSON (value types kept),
  ``i32`` data length (``-1``: no data), the data.
* log message: events back to back.
* delivery message: a bundle of one subscription's pending deliveries from one log, seqs
  ascending, events as above (:mod:`broker.store.bundle`).
* cursor (KV value): ``"<seq> <routed>"`` in ASCII, ``routed`` being how many entries of the
  message holding ``seq`` are at or below it (0 when ``seq`` ends its message). That message
  stays in the stream until the cursor passes its end, and ``routed`` lets usage count only
  its entries not yet routed.
* dead letter: a JSON object of every :class:`~broker.store.base.DeadLetter` field, the event
  as ``attributes`` (object) and ``data`` (base64, or ``null`` for no data).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from broker.errors import EventTooLarge
from broker.event import Event
from broker.store import bundle
from broker.store.base import LogEntry
from broker.store.memory import encode_attributes
from broker.store.sqlite_schema import _event

SCALE = 1_000_000
"""Entry seqs per stream sequence: the most events one append may hold."""

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")


def message_of(seq: int) -> int:
    """The stream sequence of the message holding entry ``seq``."""
    return -(-seq // SCALE)


def first_message_after(seq: int) -> int:
    """The stream sequence of the first message holding an entry above ``seq``."""
    return seq // SCALE + 1


def entries(stream_seq: int, events: Sequence[Event]) -> list[LogEntry]:
    """The log entries of the message at ``stream_seq`` holding ``events``."""
    last = stream_seq * SCALE
    count = len(events)
    return [LogEntry(seq=last - (count - 1 - i), event=e) for i, e in enumerate(events)]


def encode_cursor(seq: int, routed: int) -> bytes:
    return f"{seq} {routed}".encode()


def decode_cursor(value: bytes | None) -> tuple[int, int]:
    """``(seq, routed)`` of a cursor value (see the module docstring)."""
    seq, _, routed = (value or b"0").decode().partition(" ")
    return int(seq), int(routed or 0)


def _encode_event(out: bytearray, event: Event) -> None:
    attrs = encode_attributes(event)
    out += _U32.pack(len(attrs))
    out += attrs
    if event.data is None:
        out += _I32.pack(-1)
    else:
        out += _I32.pack(len(event.data))
        out += event.data


def _decode_event(payload: bytes | memoryview, at: int) -> tuple[Event, int]:
    (size,) = _U32.unpack_from(payload, at)
    at += 4
    attrs = bytes(payload[at : at + size])
    at += size
    (length,) = _I32.unpack_from(payload, at)
    at += 4
    if length < 0:
        return _event(attrs, None), at
    return _event(attrs, bytes(payload[at : at + length])), at + length


decode_event_at = _decode_event
"""The event framed at a position of a payload, and the position after it."""


def encode_batch(events: Sequence[Event]) -> bytes:
    """One log message holding ``events``; :class:`EventTooLarge` beyond :data:`SCALE` events."""
    if len(events) > SCALE:
        raise EventTooLarge(f"one append holds at most {SCALE} events, not {len(events)}")
    out = bytearray()
    for event in events:
        _encode_event(out, event)
    return bytes(out)


def decode_batch(payload: bytes) -> list[Event]:
    view = memoryview(payload)
    out: list[Event] = []
    at = 0
    while at < len(view):
        event, at = _decode_event(view, at)
        out.append(event)
    return out


def encode_event(event: Event) -> bytes:
    """One event in the layout log and delivery messages share (see the module docstring)."""
    out = bytearray()
    _encode_event(out, event)
    return bytes(out)


def decode_bundle(payload: bytes) -> tuple[str, list[tuple[int, Event]]]:
    """``(log, [(seq, event), ...])`` of a delivery message (:mod:`broker.store.bundle`)."""
    return bundle.decode_bundle(payload, _decode_event)
