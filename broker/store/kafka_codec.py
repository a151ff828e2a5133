"""How the Kafka store lays events, deliveries and dead letters into record values, and how log
sequence numbers map to Kafka offsets.

* A **log record** holds every event of one append, so an append is all-or-nothing. Its events
  get ``seq = (offset + 1) * SEQ_SPAN + index`` (``index`` the event's position in the record),
  so seqs grow with offsets, start at :data:`SEQ_SPAN` and never repeat.
* An **event** is ``u32`` length + the attribute dict as orjson JSON (value types kept), then
  ``i32`` length + data, with length ``-1`` for no data (``None``), so ``b""`` stays ``b""``.
* A **delivery record** holds a bundle of one subscription's deliveries sharing a key
  (:mod:`broker.store.bundle`; one delivery for an ordered subscription): ``u16`` length +
  log name, then per delivery ``u64`` seq and its own copy of the event, seqs ascending; its
  key is the events' ``partitionkey`` (:func:`delivery_key`).
* A **fan record** holds one route's deliveries to many unordered subscriptions, each event
  once (:mod:`broker.store.fan`), events framed as above; it has no key.
* A **dead-letter record** is JSON with every :class:`~broker.store.base.DeadLetter` field;
  data is base64 (``null`` for no data) so the record stays readable with Kafka tools.
"""

from __future__ import annotations

import struct
from collections.abc import Collection, Mapping, Sequence

import orjson

from broker.event import PARTITION_KEY, Event
from broker.store import bundle, fan
from broker.store.base import Delivery
from broker.store.bundle import BUNDLE_EVENTS, bundles_of, encode_bundle
from broker.store.memory import encode_attributes

FAN = ""
"""The subscription name that stands for fan records (no subscription has it)."""
SEQ_SPAN = 1_000_000
"""Seqs per log record: an append holds at most this many events."""

_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")


def seq_of(offset: int, index: int) -> int:
    """The seq of event ``index`` of the log record at ``offset``."""
    return (offset + 1) * SEQ_SPAN + index


def locate(seq: int) -> tuple[int, int]:
    """``(offset, index)`` of ``seq``; offset ``-1`` for a seq below every record's."""
    if seq < SEQ_SPAN:
        return -1, 0
    return seq // SEQ_SPAN - 1, seq % SEQ_SPAN


def encode_events(events: Sequence[Event]) -> tuple[bytes, list[int]]:
    """A log record's value and each event's size (attributes JSON plus data, as ``max_bytes``
    counts it). Raises :class:`~broker.errors.InvalidEvent` for an unstorable attribute."""
    parts: list[bytes] = []
    sizes: list[int] = []
    for event in events:
        frame, size = _frame(event)
        parts.append(frame)
        sizes.append(size)
    return b"".join(parts), sizes


def decode_events(value: bytes) -> tuple[list[Event], list[int]]:
    """The events of a log record's value and their sizes."""
    events: list[Event] = []
    sizes: list[int] = []
    view = memoryview(value)
    at = 0
    while at < len(view):
        event, size, at = _unframe(view, at)
        events.append(event)
        sizes.append(size)
    return events, sizes


def delivery_key(event: Event, *, ordered: bool) -> bytes | None:
    """The record key of a delivery: events sharing a ``partitionkey`` land in one partition,
    in routing order, and so do all events without one for an ordered subscription (key
    ``b""``). Unordered ones without a key get none: the producer spreads them over partitions,
    hence over the handles claiming them."""
    key = event.text(PARTITION_KEY)
    if key is None:
        return b"" if ordered else None
    return key.encode()


def delivery_records(
    log: str, pairs: Sequence[tuple[int, str]], events: Mapping[int, Event], ordered: Collection[str]
) -> list[tuple[str, bytes | None, bytes]]:
    """``(subscription, key, value)`` of the delivery records of one route's ``pairs``: each
    subscription's deliveries grouped by key (:func:`delivery_key`) and cut into bundles
    (:func:`broker.store.bundle.bundles_of`), except an ordered subscription's, one per record as on
    NATS, so that a crash repeats only the delivery in progress. An event is framed once however
    many subscriptions it goes to."""
    groups: dict[tuple[str, bytes | None], list[int]] = {}
    for seq, name in pairs:
        groups.setdefault((name, delivery_key(events[seq], ordered=name in ordered)), []).append(seq)
    cut = bundles_of(groups, lambda seq: frame(events[seq]),
                     most=lambda group: 1 if group[0] in ordered else BUNDLE_EVENTS)
    return [(name, key, encode_bundle(log, deliveries)) for (name, key), deliveries in cut]


def route_records(
    log: str, pairs: Sequence[tuple[int, str]], events: Mapping[int, Event], ordered: Collection[str]
) -> list[tuple[str, bytes | None, bytes]]:
    """``(subscription, key, value)`` of the records of one route's ``pairs``: fan records
    (subscription :data:`FAN`, no key) for the unordered subscriptions' deliveries when there
    are at least :data:`~broker.store.fan.FAN_MIN` of them, :func:`delivery_records` for the
    rest."""
    fanned = fan.fanned(pairs, ordered)
    own = [(seq, name) for seq, name in pairs if name not in fanned]
    fans = [(FAN, None, value) for value in fan_records(log, fanned, events)] if fanned else []
    return delivery_records(log, own, events, ordered) + fans


def fan_records(log: str, per_sub: Mapping[str, Sequence[int]], events: Mapping[int, Event]) -> list[bytes]:
    """The fan records of one route's deliveries ``per_sub`` (:func:`broker.store.fan.fan_messages`)."""
    return [fan.encode_fan(log, groups, chunk)[0]
            for groups, chunk in fan.fan_messages(per_sub, lambda seq: frame(events[seq]))]


def fan_record(log: str, deliveries: Sequence[Delivery]) -> bytes:
    """One fan record of ``deliveries`` (of ``log``, any subscriptions; at most
    :data:`broker.store.fan.FAN_DELIVERIES` of them)."""
    per_sub: dict[str, list[int]] = {}
    events: dict[int, Event] = {}
    for d in deliveries:
        per_sub.setdefault(d.subscription, []).append(d.seq)
        events[d.seq] = d.event
    groups: fan.Groups = [(sorted(seqs), [sub]) for sub, seqs in sorted(per_sub.items())]
    return fan.encode_fan(log, groups, [(seq, frame(events[seq])) for seq in sorted(events)])[0]


def decode_fan(value: bytes) -> tuple[str, dict[str, list[int]], dict[int, Event]]:
    """``(log, subscription -> seqs, seq -> event)`` of a fan record."""
    return fan.decode_fan(value, _event_at)


def frame(event: Event) -> bytes:
    """An event as delivery and log records hold it."""
    return _frame(event)[0]


def decode_bundle(subscription: str, value: bytes) -> list[Delivery]:
    """The deliveries of a delivery record, ascending by seq."""
    log, found = bundle.decode_bundle(value, _event_at)
    return [Delivery(log=log, subscription=subscription, seq=seq, event=event) for seq, event in found]


def _event_at(view: memoryview, at: int) -> tuple[Event, int]:
    event, _, after = _unframe(view, at)
    return event, after


def _frame(event: Event) -> tuple[bytes, int]:
    attrs = encode_attributes(event)
    data = event.data
    if data is None:
        return _U32.pack(len(attrs)) + attrs + _I32.pack(-1), len(attrs)
    return _U32.pack(len(attrs)) + attrs + _I32.pack(len(data)) + data, len(attrs) + len(data)


def _unframe(view: memoryview, at: int) -> tuple[Event, int, int]:
    """The event framed at ``at``, its size and the position after it."""
    (length,) = _U32.unpack_from(view, at)
    at += 4
    attrs = orjson.loads(view[at : at + length])
    at += length
    (size,) = _I32.unpack_from(view, at)
    at += 4
    if size < 0:
        return Event(attrs, None), length, at
    return Event(attrs, bytes(view[at : at + size])), length + size, at + size
