"""Fan records: one message or record for the deliveries of a route to many subscriptions.

A route of one event to 1,000 Triggers would otherwise write 1,000 bundles (one per
subscription, :mod:`broker.store.bundle`), and each would be fetched and acknowledged on its
own: with few events per route (the bench offers 2-80 events/s to 1,000 Triggers) that was
most of a shared store's cost, whatever the bundle size. When a route has deliveries for at
least :data:`FAN_MIN` unordered subscriptions, a shared store writes them instead as fan
records, which carry each event once and say which subscriptions get it. How a store hands
their deliveries out is its own business (:mod:`broker.store.nats_fan`,
:mod:`broker.store.kafka_intake`).

Layout (big-endian): ``u32`` header length, the header (JSON: a list of ``[seqs, subscriptions]``
groups, each subscription of a group getting each of its seqs), then a bundle of the events
(:mod:`broker.store.bundle`, each event once, framed as the store frames events). A record
holds at most :data:`FAN_DELIVERIES` deliveries and :data:`FAN_HEADER_BYTES` of subscription
names.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

import orjson

from broker.event import Event
from broker.store.bundle import BUNDLE_EVENTS, Encoded, EventAt, cut, decode_bundle, encode_bundle

FAN_MIN = 2
"""Unordered subscriptions a route must have deliveries for before they go in fan records;
below it each subscription gets bundles of its own (one fetch either way, and no moving out)."""
FAN_DELIVERIES = 4096
"""Most deliveries in one fan record: its holder keeps it until all have an outcome."""
FAN_HEADER_BYTES = 256 * 1024
"""Most bytes of subscription names in one fan record (NATS's default ``max_payload`` and
Kafka's default ``message.max.bytes`` are about 1 MiB, and the events take up to 256 KiB more)."""

Groups = list[tuple[list[int], list[str]]]
"""A fan record's header: ``(seqs, subscriptions)`` groups."""
_LEN = struct.Struct(">I")


def fanned(pairs: Iterable[tuple[int, str]], ordered: Collection[str]) -> dict[str, list[int]]:
    """The deliveries of one route's ``(seq, subscription)`` pairs that go in fan records, by
    subscription: the unordered subscriptions' when there are at least :data:`FAN_MIN` of them,
    else none (the rest go in bundles of their own, :mod:`broker.store.bundle`)."""
    found: dict[str, list[int]] = {}
    for seq, sub in pairs:
        if sub not in ordered:
            found.setdefault(sub, []).append(seq)
    return found if len(found) >= FAN_MIN else {}


def fan_messages(
    per_sub: Mapping[str, Sequence[int]], encode: Callable[[int], bytes]
) -> list[tuple[Groups, list[tuple[int, bytes]]]]:
    """``per_sub``'s deliveries as fan records ``(groups, [(seq, encoded event), ...])``.

    Subscriptions are split (sorted) into runs of at most :data:`FAN_HEADER_BYTES` of names;
    each run's seqs are cut into bundles of at most :data:`FAN_DELIVERIES` // run length
    events. The same input always gives the same records (NATS drops a route done again as
    duplicates by message id).
    """
    bodies = Encoded.of(encode)
    out: list[tuple[Groups, list[tuple[int, bytes]]]] = []
    for run in _runs(sorted(per_sub)):
        wanted = {sub: set(per_sub[sub]) for sub in run}
        seqs = sorted(set().union(*wanted.values()))
        most = max(1, min(BUNDLE_EVENTS, FAN_DELIVERIES // len(run)))
        for chunk in cut(seqs, bodies.size, most=most):
            groups: dict[tuple[int, ...], list[str]] = {}
            for sub in run:
                mine = tuple(seq for seq in chunk if seq in wanted[sub])
                if mine:
                    groups.setdefault(mine, []).append(sub)
            events = [(seq, bodies(seq)) for seq in chunk]
            out.append(([(list(seqs), subs) for seqs, subs in groups.items()], events))
    return out


def _runs(subs: list[str]) -> list[list[str]]:
    runs: list[list[str]] = [[]]
    total = 0
    for sub in subs:
        length = len(sub.encode()) + 4
        if runs[-1] and total + length > FAN_HEADER_BYTES:
            runs.append([])
            total = 0
        runs[-1].append(sub)
        total += length
    return runs if runs[0] else []


def encode_fan(log: str, groups: Groups, events: Sequence[tuple[int, bytes]]) -> tuple[bytes, bytes]:
    """A fan record's value, and its header (for a digest: equal records have equal ones)."""
    header = orjson.dumps(groups)
    return _LEN.pack(len(header)) + header + encode_bundle(log, events), header


def decode_fan(payload: bytes, event_at: EventAt) -> tuple[str, dict[str, list[int]], dict[int, Event]]:
    """``(log, subscription -> seqs, seq -> event)`` of a fan record, events decoded by
    ``event_at``."""
    (size,) = _LEN.unpack_from(payload, 0)
    groups = orjson.loads(payload[4 : 4 + size])
    log, deliveries = decode_bundle(payload[4 + size :], event_at)
    per_sub: dict[str, list[int]] = {}
    for seqs, subs in groups:
        for sub in subs:
            per_sub.setdefault(sub, []).extend(seqs)
    return log, per_sub, dict(deliveries)
