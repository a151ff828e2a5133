"""Handing back the rest of partly finished delivery records when a Kafka store handle closes.

A record's offset is committed only once every delivery in its bundle is finished. A handle
that leaves with some finished and some not would have the next owner fetch the record again
and deliver the finished ones a second time. So on a clean close, the unfinished deliveries of
such a record are produced again as a new record of the same partition (acknowledged; a fan
record's rest as a fan record, :mod:`broker.store.fan`), and then the old record counts as
finished. A record whose unfinished deliveries are not all in this
handle's buffer (some were dropped with a revoked partition) is left as it is: it comes back
whole. A crash hands back nothing; the next owner then delivers the whole record.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaProducer

from broker.store.bundle import encode_bundle
from broker.store.kafka_buffer import SubscriptionBuffer
from broker.store.kafka_codec import FAN, fan_record, frame
from broker.store.kafka_config import kafka_errors
from broker.store.kafka_offsets import Offsets

log = logging.getLogger(__name__)


async def hand_back(
    offsets: Offsets, subs: Mapping[str, SubscriptionBuffer], producer: AIOKafkaProducer, *, timeout: float
) -> None:
    """Produce the unfinished rest of every partly finished record again and count the records
    finished (see the module docstring). Failures are logged: those records come back whole."""
    sends = []
    for tp, part in list(offsets.parts.items()):
        fan = part.subscription == FAN
        mine = list(subs.values()) if fan else [subs[part.subscription]] if part.subscription in subs else []
        for offset in list(part.gone) if mine else []:
            rest = sorted((item for sub in mine for item in sub.of_record(tp, offset)),
                          key=lambda item: item.key)
            if not rest or len(rest) != part.left.get(offset):
                continue
            deliveries = [item.delivery for item in rest]
            if fan:
                value = fan_record(deliveries[0].log, deliveries)
            else:
                value = encode_bundle(deliveries[0].log, [(d.seq, frame(d.event)) for d in deliveries])
            sends.append((tp, offset, value))
    if not sends:
        return
    try:
        async with kafka_errors("handing back unfinished deliveries", timeout):
            acks = [await producer.send(tp.topic, value, partition=tp.partition) for tp, _, value in sends]
            await asyncio.gather(*acks)
    except Exception as exc:  # the records come back whole: duplicates, nothing lost
        log.warning("unfinished deliveries of %d records not handed back: %s", len(sends), exc)
        return
    for tp, offset, _ in sends:
        offsets.finish(tp, offset)
