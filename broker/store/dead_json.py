"""A dead-letter record as one JSON document, for the stores that keep records as messages.

Every :class:`~broker.store.base.DeadLetter` field is kept; the event's attributes keep their
types (orjson) and its data is standard base64 (``null`` when the event has none), so the
record reads back exactly as written.
"""

from __future__ import annotations

import base64

import orjson

from broker.event import Event
from broker.store.base import DeadLetter
from broker.store.memory import encode_attributes


def encode_dead_letter(record: DeadLetter) -> bytes:
    """Raises :class:`~broker.errors.InvalidEvent` for attributes no backend can keep."""
    data = record.event.data
    return orjson.dumps({
        "log": record.log,
        "subscription": record.subscription,
        "seq": record.seq,
        "attributes": orjson.Fragment(encode_attributes(record.event)),
        "data": None if data is None else base64.b64encode(data).decode(),
        "reason": record.reason,
        "attempts": record.attempts,
        "status": record.status,
        "dead_at": record.dead_at,
    })


def decode_dead_letter(payload: bytes) -> DeadLetter:
    doc = orjson.loads(payload)
    data = doc["data"]
    event = Event(doc["attributes"], None if data is None else base64.b64decode(data))
    return DeadLetter(log=doc["log"], subscription=doc["subscription"], seq=doc["seq"], event=event,
                      reason=doc["reason"], attempts=doc["attempts"], status=doc["status"],
                      dead_at=doc["dead_at"])
