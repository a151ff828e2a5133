"""Bundles: the deliveries of one route that a shared store writes as one message or record.

A message per delivery costs the log server a write, a read and an acknowledgement each, and
with them most of a store's cost in fan-out; a bundle pays them once for up to
:data:`BUNDLE_EVENTS` deliveries. A bundle holds deliveries of one subscription only (each
subscription has its own consumer or topic), seqs ascending; fan records
(:mod:`broker.store.fan`) wrap one bundle of events for many subscriptions. How a bundle is
settled once its deliveries have outcomes is the store's own business
(:mod:`broker.store.nats_held`, :mod:`broker.store.kafka_offsets`).

Layout of a bundle (big-endian), the same on both stores: ``u16`` log name length, the log name
(UTF-8), then per delivery ``u64`` entry seq and the event as the store frames it.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

from broker.event import Event

K = TypeVar("K")
EventAt = Callable[[memoryview, int], tuple[Event, int]]
"""A store's event decoder: the event framed at a position, and the position after it."""

_HEAD = struct.Struct(">H")
_SEQ = struct.Struct(">Q")

BUNDLE_EVENTS = 64
"""Most deliveries in one bundle: a worker's default prefetch (``maxInFlight`` 64)."""
BUNDLE_BYTES = 256 * 1024
"""Most event bytes in one bundle, unless one event alone is larger (NATS's default
``max_payload`` and Kafka's default ``message.max.bytes`` are both about 1 MiB)."""


def cut(seqs: Iterable[int], size: Callable[[int], int], *, most: int = BUNDLE_EVENTS) -> list[list[int]]:
    """``seqs`` (ascending, distinct) in consecutive bundles of at most ``most`` seqs and
    :data:`BUNDLE_BYTES` bytes by ``size``; the same input always gives the same bundles."""
    out: list[list[int]] = []
    bundle: list[int] = []
    total = 0
    for seq in seqs:
        length = size(seq)
        if bundle and (len(bundle) >= most or total + length > BUNDLE_BYTES):
            out.append(bundle)
            bundle, total = [], 0
        bundle.append(seq)
        total += length
    if bundle:
        out.append(bundle)
    return out


class Encoded:
    """Events encoded by seq, each once however many bundles or fan records carry it (an
    event matching many subscriptions)."""

    def __init__(self, encode: Callable[[int], bytes]) -> None:
        self._encode = encode
        self._bodies: dict[int, bytes] = {}

    @classmethod
    def of(cls, encode: Callable[[int], bytes]) -> Encoded:
        return encode if isinstance(encode, Encoded) else cls(encode)

    def __call__(self, seq: int) -> bytes:
        body = self._bodies.get(seq)
        if body is None:
            body = self._bodies[seq] = self._encode(seq)
        return body

    def size(self, seq: int) -> int:
        return len(self(seq))


def bundles_of(
    groups: Mapping[K, Iterable[int]], encode: Callable[[int], bytes], *, most: Callable[[K], int]
) -> list[tuple[K, list[tuple[int, bytes]]]]:
    """Each group's seqs (sorted, de-duplicated) cut into bundles of at most ``most(group)``
    seqs, as ``(group, [(seq, encode(seq)), ...])``; each seq is encoded once (:class:`Encoded`)."""
    bodies = Encoded.of(encode)
    return [(group, [(seq, bodies(seq)) for seq in bundle])
            for group, seqs in groups.items()
            for bundle in cut(sorted(set(seqs)), bodies.size, most=most(group))]


def encode_bundle(log: str, deliveries: Sequence[tuple[int, bytes]]) -> bytes:
    """A bundle of ``(seq, framed event)`` pairs of ``log`` (see the module docstring)."""
    name = log.encode()
    parts = [_HEAD.pack(len(name)), name]
    for seq, body in deliveries:
        parts.append(_SEQ.pack(seq))
        parts.append(body)
    return b"".join(parts)


def decode_bundle(payload: bytes, event_at: EventAt) -> tuple[str, list[tuple[int, Event]]]:
    """``(log, [(seq, event), ...])`` of a bundle, events decoded by ``event_at``."""
    view = memoryview(payload)
    (size,) = _HEAD.unpack_from(view, 0)
    log = bytes(view[2 : 2 + size]).decode()
    at = 2 + size
    out: list[tuple[int, Event]] = []
    while at < len(view):
        (seq,) = _SEQ.unpack_from(view, at)
        event, at = event_at(view, at + _SEQ.size)
        out.append((seq, event))
    return log, out
