"""The dispatcher end to end: memory store, real HttpSender, real loopback sinks.

Scenarios follow the reference's acceptance list (§2.H I-N, Q) with Weir's delivery decisions.
Outcomes are awaited by polling with deadlines (:func:`tests.sinks.eventually`); timing
assertions use generous tolerances.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import gc
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY

from broker.delivery.dispatcher import START_BATCH, Dispatcher, DispatcherConfig
from broker.delivery.http_sender import HttpSender
from broker.delivery.spec import DeliverySpec
from broker.event import ARRIVAL_TIME, TTL, Event
from broker.ingest import Ingest
from broker.routing import BrokerPlan, SubscriptionPlan
from broker.store.memory import MemoryStore
from tests.sinks import Recorded, RecordingSink, Reply, eventually, unused_url

LOG = "team-a/default"
STRUCTURED = "application/cloudevents+json"
NAMESPACE = "team-a"
_ids = itertools.count()


class TypeMatcher:
    """A stand-in for the Trigger index: event type -> subscription names."""

    def __init__(self, routes: Mapping[str, Sequence[str]]) -> None:
        self.routes = routes

    def match(self, event: Event) -> Iterable[str]:
        return self.routes.get(event.type, ())


def event(type_: str = "order.created", **extensions: str) -> Event:
    attributes = {"specversion": "1.0", "id": f"e-{next(_ids)}", "source": "/orders", "type": type_,
                  "datacontenttype": "application/json", **extensions}
    return Event(attributes, b'{"total":12}')


def name(label: str) -> str:
    """A unique subscription name, so Prometheus series do not mix between tests."""
    return f"{NAMESPACE}/{label}-{uuid.uuid4().hex[:8]}"


def sub(sub_name: str, url: str, **options: Any) -> SubscriptionPlan:
    delivery = options.pop("delivery", DeliverySpec())
    return SubscriptionPlan(name=sub_name, namespace=NAMESPACE, subscriber=url, delivery=delivery, **options)


def broker(routes: Mapping[str, Sequence[str]], *subs: SubscriptionPlan) -> dict[str, BrokerPlan]:
    return {LOG: BrokerPlan(log=LOG, matcher=TypeMatcher(routes), subscriptions={s.name: s for s in subs})}


@dataclass
class Mesh:
    store: MemoryStore
    ingest: Ingest
    dispatcher: Dispatcher

    async def send(self, *events: Event) -> None:
        await self.ingest.accept(LOG, events)

    def stat(self, sub_name: str, key: str) -> int:
        return int(self.dispatcher.stats().get(sub_name, {}).get(key, 0))

    async def settled(self) -> None:
        """Wait until no delivery is pending (outcomes are written back in batches)."""

        async def none_pending() -> bool:
            return (await self.store.stats()).pending == 0

        await eventually(none_pending, what="no pending deliveries")

    async def until(self, sub_name: str, key: str, value: int, timeout: float = 5.0) -> None:
        await eventually(lambda: self.stat(sub_name, key) >= value, timeout=timeout,
                         what=f"{sub_name} {key} >= {value} (stats: {self.dispatcher.stats()})")


@asynccontextmanager
async def mesh(
    plans: Mapping[str, BrokerPlan],
    *,
    config: DispatcherConfig | None = None,
    store: MemoryStore | None = None,
) -> AsyncIterator[Mesh]:
    store = store or MemoryStore()
    await store.open()
    sender = HttpSender()
    ingest = Ingest(store)
    dispatcher = Dispatcher(store=store, sender=sender, ingest=ingest,
                            config=config or DispatcherConfig(default_timeout=5.0))
    await dispatcher.apply(plans)
    await dispatcher.start()
    try:
        yield Mesh(store=store, ingest=ingest, dispatcher=dispatcher)
    finally:
        await dispatcher.stop(grace=0.0)
        await sender.close()


@pytest.fixture
async def sink() -> AsyncIterator[RecordingSink]:
    async with RecordingSink() as server:
        yield server


def spacing(requests: Sequence[Recorded]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(requests)]


async def test_overlapping_triggers_each_get_their_events(sink: RecordingSink) -> None:
    t1, t2 = name("all"), name("created")
    plans = broker({"order.created": [t1, t2], "order.paid": [t1]},
                   sub(t1, sink.url_for("/t1")), sub(t2, sink.url_for("/t2")))
    created, paid = event("order.created", partitionkey="p"), event("order.paid")
    async with mesh(plans) as m:
        await m.send(created, paid, event("ignored"))
        await m.until(t1, "delivered", 2)
        await m.until(t2, "delivered", 1)
        await m.settled()
    assert sorted(e.id for e in sink.events("/t1")) == sorted([created.id, paid.id])
    [request] = sink.requests("/t2")
    assert request.headers["prefer"] == "reply"
    assert request.headers["kn-namespace"] == NAMESPACE
    got = request.event
    assert got is not None
    assert got.data == created.data
    assert TTL not in got.attributes
    assert ARRIVAL_TIME in got.attributes
    assert got.without([ARRIVAL_TIME]) == created


async def test_retry_until_success_makes_exactly_three_attempts(sink: RecordingSink) -> None:
    t, dls = name("flaky"), sink.url_for("/dls")
    sink.script("/flaky", Reply(status=500), Reply(status=500), then=Reply(status=200))
    spec = DeliverySpec(retry=3, backoff_delay=0.01, dead_letter_sink=dls)
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/flaky"), delivery=spec))) as m:
        await m.send(event())
        await m.until(t, "delivered", 1)
        assert m.dispatcher.stats()[t] == {"in_flight": 0, "delivered": 1, "retries": 2, "dead_lettered": 0,
                                           "replies": 0, "replies_dropped": 0}
    assert len(sink.requests("/flaky")) == 3
    assert sink.requests("/dls") == []
    assert REGISTRY.get_sample_value("weir_deliveries_total", {"trigger": t, "outcome": "delivered"}) == 1
    assert REGISTRY.get_sample_value("weir_delivery_attempts_total", {"trigger": t}) == 3


@pytest.mark.parametrize(
    ("reply", "dead_letter_reply", "outcome"),
    [
        (Reply(status=503), Reply(status=202), "dead_letter_sink"),  # retried, then the sink
        (Reply(status=400), Reply(status=202), "dead_letter_sink"),  # final at once
        (Reply(status=503), Reply(status=503), "dead_letter_record"),  # the sink fails too
    ],
)
async def test_failed_deliveries_leave_no_reference_cycles(
    sink: RecordingSink, reply: Reply, dead_letter_reply: Reply, outcome: str
) -> None:
    # Cyclic garbage is freed only by the collector, whose passes pause the event loop for
    # milliseconds once enough has piled up: every delivery of the process waits them out.
    t, count = name("cycles"), 20
    sink.script("/fail", then=reply)
    sink.script("/dls", then=dead_letter_reply)
    spec = DeliverySpec(retry=3, backoff_delay=0.001, dead_letter_sink=sink.url_for("/dls"))
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/fail"), delivery=spec))) as m:
        await m.send(event())  # first use creates what lasts: counters, connections
        await m.until(t, "dead_lettered", 1)
        gc.collect()
        gc.disable()
        try:
            await m.send(*(event() for _ in range(count)))
            await m.until(t, "dead_lettered", count + 1)
            cyclic = gc.collect()
        finally:
            gc.enable()
        outcomes = REGISTRY.get_sample_value("weir_deliveries_total", {"trigger": t, "outcome": outcome})
    assert outcomes == count + 1
    # Without untraced() each failed delivery left dozens of objects in cycles; allow a few others.
    assert cyclic < count, f"{cyclic} objects in reference cycles after {count} failed deliveries"


async def test_non_retriable_status_goes_straight_to_the_dead_letter_sink(sink: RecordingSink) -> None:
    t, url = name("bad"), sink.url_for("/bad")
    sink.script("/bad", then=Reply(status=400, body=b"missing field 'total'"))
    spec = DeliverySpec(retry=5, backoff_delay=0.01, dead_letter_sink=sink.url_for("/dls"))
    original = event()
    async with mesh(broker({"order.created": [t]}, sub(t, url, delivery=spec))) as m:
        await m.send(original)
        await m.until(t, "dead_lettered", 1)
        await m.settled()
        assert await m.store.dead_letters(LOG) == []
    assert len(sink.requests("/bad")) == 1
    [letter] = sink.requests("/dls")
    assert "prefer" not in letter.headers and "kn-namespace" not in letter.headers
    assert letter.event is not None
    attrs = letter.event.attributes
    assert attrs["knativeerrorcode"] == "400"
    assert attrs["knativeerrordest"] == url
    assert base64.b64decode(str(attrs["knativeerrordata"])) == b"missing field 'total'"
    assert TTL not in attrs
    assert letter.event.without(["knativeerrorcode", "knativeerrordest", "knativeerrordata", ARRIVAL_TIME]) \
        == original


async def test_exponential_backoff_spacing_then_dead_letter(sink: RecordingSink) -> None:
    t = name("down")
    sink.script("/down", then=Reply(status=503))
    spec = DeliverySpec(retry=2, backoff_policy="exponential", backoff_delay=0.1,
                        dead_letter_sink=sink.url_for("/dls"))
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/down"), delivery=spec))) as m:
        await m.send(event())
        await m.until(t, "dead_lettered", 1)
    attempts = sink.requests("/down")
    assert len(attempts) == 3
    first, second = spacing(attempts)
    assert 0.1 <= first < 0.25
    assert 0.2 <= second < 0.35
    [letter] = sink.events("/dls")
    assert letter.attributes["knativeerrorcode"] == "503"


async def test_retry_after_raises_the_wait(sink: RecordingSink) -> None:
    t = name("busy")
    sink.script("/busy", Reply(status=429, headers={"Retry-After": "1"}), then=Reply(status=202))
    spec = DeliverySpec(retry=2, backoff_delay=0.01, retry_after_max=5.0)
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/busy"), delivery=spec))) as m:
        await m.send(event())
        await m.until(t, "delivered", 1)
    [gap] = spacing(sink.requests("/busy"))
    assert 1.0 <= gap < 1.5


@pytest.mark.parametrize(
    ("response", "delivered", "dead_lettered"),
    [
        pytest.param(Reply(status=200, body=b"thanks!", headers={"Content-Type": "text/plain"}), 1, 0,
                     id="200 without CE markers is a plain success"),
        pytest.param(Reply(status=204), 1, 0, id="204"),
        pytest.param(Reply(status=202, event=event("order.receipt")), 1, 0,
                     id="202 with an event is no reply"),
        pytest.param(Reply(status=200, body=b"{not json", headers={"Content-Type": STRUCTURED}),
                     0, 1, id="200 claiming a CE but invalid"),
        pytest.param(Reply(status=200, headers={"ce-specversion": "1.0"}), 0, 1, id="ce headers without id"),
    ],
)
async def test_response_kinds(
    sink: RecordingSink, response: Reply, delivered: int, dead_lettered: int
) -> None:
    t = name("kinds")
    sink.script("/s", then=response)
    spec = DeliverySpec(retry=3, backoff_delay=0.01, dead_letter_sink=sink.url_for("/dls"))
    routes = {"order.created": [t], "order.receipt": [t]}
    async with mesh(broker(routes, sub(t, sink.url_for("/s"), delivery=spec))) as m:
        await m.send(event())
        await m.until(t, "delivered" if delivered else "dead_lettered", 1)
        assert m.stat(t, "replies") == 0
        await m.settled()
    assert len(sink.requests("/s")) == 1
    assert len(sink.requests("/dls")) == dead_lettered
    if dead_lettered:
        assert sink.events("/dls")[0].attributes["knativeerrorcode"] == "200"


@pytest.mark.parametrize(
    ("retry", "reason", "status", "attempts"),
    [
        (0, "HTTP 400 from {url}", 400, 1),
        (2, "HTTP 400 from {url}", 400, 1),
    ],
)
async def test_without_dead_letter_sink_the_store_keeps_a_record(
    sink: RecordingSink, retry: int, reason: str, status: int, attempts: int
) -> None:
    t, url = name("nodls"), sink.url_for("/nodls")
    sink.script("/nodls", then=Reply(status=400))
    spec = DeliverySpec(retry=retry, backoff_delay=0.01)
    original = event()
    async with mesh(broker({"order.created": [t]}, sub(t, url, delivery=spec))) as m:
        await m.send(original)
        await m.until(t, "dead_lettered", 1)
        [record] = await m.store.dead_letters(LOG)
        assert (await m.store.stats()).pending == 0
    assert record.subscription == t
    assert record.reason == reason.format(url=url)
    assert record.status == status
    assert record.attempts == attempts
    assert record.event.id == original.id and TTL not in record.event.attributes


async def test_transport_errors_are_retried_then_recorded(sink: RecordingSink) -> None:
    t, url = name("refused"), unused_url("/nowhere")
    spec = DeliverySpec(retry=2, backoff_delay=0.01, dead_letter_sink=sink.url_for("/dls"))
    async with mesh(broker({"order.created": [t]}, sub(t, url, delivery=spec))) as m:
        await m.send(event())
        await m.until(t, "dead_lettered", 1)
        assert m.stat(t, "retries") == 2
    [letter] = sink.events("/dls")
    assert letter.attributes["knativeerrorcode"] == "500"
    assert letter.attributes["knativeerrordest"] == url
    assert base64.b64decode(str(letter.attributes["knativeerrordata"])).startswith(b"connection refused to ")


async def test_failing_dead_letter_sink_falls_back_to_the_store(sink: RecordingSink) -> None:
    t = name("dlsdown")
    sink.script("/sub", then=Reply(status=500))
    sink.script("/dls", then=Reply(status=500, body=b"dls down"))
    spec = DeliverySpec(retry=1, backoff_delay=0.01, dead_letter_sink=sink.url_for("/dls"))
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/sub"), delivery=spec))) as m:
        await m.send(event())
        await m.until(t, "dead_lettered", 1)
        [record] = await m.store.dead_letters(LOG)
    assert len(sink.requests("/sub")) == 2
    assert len(sink.requests("/dls")) == 2
    assert record.attempts == 4
    assert record.status == 500
    sub_url = sink.url_for("/sub")
    assert record.reason.startswith(f"HTTP 500 from {sub_url}; dead-letter sink failed: HTTP 500")


async def test_reply_is_routed_to_the_trigger_matching_its_type(sink: RecordingSink) -> None:
    orders, receipts = name("orders"), name("receipts")
    receipt = Event({"specversion": "1.0", "id": "r-1", "source": "/billing", "type": "order.receipt",
                     "datacontenttype": "text/plain"}, b"ok")
    sink.script("/orders", then=Reply(event=receipt))
    routes = {"order.created": [orders], "order.receipt": [receipts]}
    plans = broker(routes, sub(orders, sink.url_for("/orders")), sub(receipts, sink.url_for("/receipts")))
    async with mesh(plans) as m:
        await m.send(event())
        await m.until(receipts, "delivered", 1)
        assert m.stat(orders, "replies") == 1
    [got] = sink.events("/receipts")
    assert got.without([ARRIVAL_TIME]) == receipt


async def test_reply_that_cannot_be_stored_fails_the_delivery(sink: RecordingSink) -> None:
    t = name("full")
    reply = Event({"specversion": "1.0", "id": "r", "source": "/s", "type": "order.receipt"}, None)
    sink.script("/full", then=Reply(event=reply))
    spec = DeliverySpec(retry=2, backoff_delay=0.01, dead_letter_sink=sink.url_for("/dls"))
    # Room for the original event only: accepting the reply raises StoreFull.
    store = MemoryStore(max_events=1)
    plans = broker({"order.created": [t]}, sub(t, sink.url_for("/full"), delivery=spec))
    async with mesh(plans, store=store) as m:
        await m.send(event())
        await m.until(t, "dead_lettered", 1)
        assert m.stat(t, "replies") == 0
    assert len(sink.requests("/full")) == 3
    [letter] = sink.events("/dls")
    assert letter.attributes["knativeerrorcode"] == "500"
    assert base64.b64decode(str(letter.attributes["knativeerrordata"])).startswith(b"store holds")


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
async def test_delivery_format(sink: RecordingSink, structured: bool) -> None:
    t = name("format")
    spec = DeliverySpec(structured=structured)
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/f"), delivery=spec))) as m:
        await m.send(event())
        await m.until(t, "delivered", 1)
    [request] = sink.requests("/f")
    assert request.headers["content-type"].startswith(STRUCTURED) is structured
    assert ("ce-id" in request.headers) is not structured


async def test_reply_loop_ends_when_the_ttl_runs_out(sink: RecordingSink) -> None:
    t = name("loop")
    ping_ids = itertools.count()
    sink.respond("/loop", lambda req: Reply(event=Event(
        {"specversion": "1.0", "id": f"ping-{next(ping_ids)}", "source": "/loop", "type": "ping"}, None)))
    async with mesh(broker({"ping": [t]}, sub(t, sink.url_for("/loop")))) as m:
        await m.send(Event({"specversion": "1.0", "id": "start", "source": "/t", "type": "ping", TTL: "5"}))
        await m.until(t, "replies_dropped", 1)
        assert m.stat(t, "replies") == 4
        assert m.stat(t, "delivered") == 5
    assert len(sink.requests("/loop")) == 5


async def test_slow_or_failing_subscribers_do_not_delay_others(sink: RecordingSink) -> None:
    slow, failing, fast = name("slow"), name("failing"), name("fast")
    sink.script("/slow", then=Reply(delay=3.0))
    sink.script("/failing", then=Reply(status=500))
    failing_spec = DeliverySpec(retry=10, backoff_delay=0.5)
    plans = broker({"order.created": [slow, failing, fast]},
                   sub(slow, sink.url_for("/slow"), max_in_flight=1),
                   sub(failing, sink.url_for("/failing"), delivery=failing_spec),
                   sub(fast, sink.url_for("/fast")))
    async with mesh(plans) as m:
        started = time.monotonic()
        await m.send(*[event() for _ in range(20)])
        await m.until(fast, "delivered", 20, timeout=2.0)
        assert time.monotonic() - started < 2.0
        assert m.stat(slow, "delivered") == 0
        assert m.stat(slow, "in_flight") == 1
        assert len(sink.requests("/slow")) == 1
        assert m.stat(failing, "delivered") == 0


async def test_ordered_trigger_keeps_partition_order(sink: RecordingSink) -> None:
    ordered, unordered = name("ordered"), name("unordered")
    delays = {"a": [0.15, 0.1, 0.05], "b": [0.15, 0.1, 0.05], "": [0.1, 0.05]}
    events: list[Event] = []
    for key in ["a", "b", ""]:
        for i, delay in enumerate(delays[key]):
            extra = {"partitionkey": key} if key else {}
            events.append(Event({"specversion": "1.0", "id": f"{key or '-'}{i}", "source": "/o", "type": "t",
                                 "delay": str(delay), **extra}, None))

    def slow(req: Recorded) -> Reply:
        assert req.event is not None
        return Reply(delay=float(str(req.event.attributes["delay"])))

    sink.respond("/ordered", slow)
    sink.respond("/unordered", slow)
    plans = broker({"t": [ordered, unordered]},
                   sub(ordered, sink.url_for("/ordered"), ordered=True, max_in_flight=8),
                   sub(unordered, sink.url_for("/unordered"), max_in_flight=8))
    async with mesh(plans) as m:
        await m.send(*events)
        await m.until(ordered, "delivered", len(events))
        await m.until(unordered, "delivered", len(events))
    by_key: dict[str, list[Recorded]] = {}
    for req in sink.requests("/ordered"):
        assert req.event is not None
        by_key.setdefault(str(req.event.attributes.get("partitionkey", "")), []).append(req)
    for key, reqs in by_key.items():
        assert [r.event.id for r in reqs if r.event] == [f"{key or '-'}{i}" for i in range(len(delays[key]))]
        for previous, gap in zip(delays[key], spacing(reqs), strict=False):
            assert gap >= previous - 0.005, f"key {key!r}: gap {gap:.3f}s < {previous}s"
    firsts = [reqs[0].at for reqs in by_key.values()]
    # Run one after another, the last key's first event would wait >= 0.3 s.
    assert max(firsts) - min(firsts) < 0.15, "different keys must run in parallel"
    arrivals = [r.at for r in sink.requests("/unordered")]
    # Run one after another, the spread would be >= 0.75 s.
    assert max(arrivals) - min(arrivals) < 0.3, "an unordered trigger sends without waiting"


async def test_stop_leaves_unfinished_deliveries_pending(sink: RecordingSink) -> None:
    t, url = name("stuck"), sink.url_for("/stuck")
    sink.script("/stuck", then=Reply(delay=10.0))
    store = MemoryStore()
    plans = broker({"order.created": [t]}, sub(t, url))
    async with mesh(plans, store=store) as m:
        await m.send(event(), event(), event())
        await sink.wait_for(3, path="/stuck")
        started = time.monotonic()
        await m.dispatcher.stop(grace=0.2)
        assert time.monotonic() - started < 1.0
        assert (await store.stats()).pending == 3
    sink.script("/stuck", then=Reply(status=200))
    async with mesh(plans, store=store) as m:
        await m.until(t, "delivered", 3)
        await m.settled()


async def test_stop_lets_in_flight_deliveries_finish_within_grace(sink: RecordingSink) -> None:
    t = name("graceful")
    sink.script("/g", then=Reply(delay=0.3))
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/g")))) as m:
        await m.send(event(), event())
        await sink.wait_for(2, path="/g")
        await m.dispatcher.stop(grace=5.0)
        assert (await m.store.stats()).pending == 0


async def test_expired_events_are_recorded_without_an_attempt(sink: RecordingSink) -> None:
    t = name("old")
    plans = broker({"order.created": [t]}, sub(t, sink.url_for("/old")))
    config = DispatcherConfig(default_timeout=5.0, max_event_age=60.0)
    long_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    async with mesh(plans, config=config) as m:
        await m.store.append(LOG, [event().with_attributes({ARRIVAL_TIME: long_ago, TTL: 255})])
        await m.send(event())
        await m.until(t, "dead_lettered", 1)
        await m.until(t, "delivered", 1)
        [record] = await m.store.dead_letters(LOG)
    assert record.reason == "expired" and record.attempts == 0 and record.status is None
    assert len(sink.requests("/old")) == 1


async def test_changed_subscriber_url_applies_to_the_next_attempt(sink: RecordingSink) -> None:
    t = name("moving")
    sink.script("/old", then=Reply(status=503))
    spec = DeliverySpec(retry=5, backoff_delay=0.3)
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/old"), delivery=spec))) as m:
        await m.send(event())
        await sink.wait_for(1, path="/old")
        await m.dispatcher.apply(broker({"order.created": [t]}, sub(t, sink.url_for("/new"), delivery=spec)))
        await m.until(t, "delivered", 1)
    assert len(sink.requests("/old")) == 1
    assert len(sink.requests("/new")) == 1


async def test_removed_subscription_is_forgotten_and_others_continue(sink: RecordingSink) -> None:
    gone, kept = name("gone"), name("kept")
    sink.script("/gone", then=Reply(delay=10.0))
    routes = {"order.created": [gone, kept]}
    async with mesh(broker(routes, sub(gone, sink.url_for("/gone")), sub(kept, sink.url_for("/kept")))) as m:
        await m.send(event())
        await sink.wait_for(1, path="/gone")
        await m.until(kept, "delivered", 1)
        await m.dispatcher.apply(broker(routes, sub(kept, sink.url_for("/kept"))))
        assert gone not in m.dispatcher.stats()
        await m.settled()
        await m.send(event())
        await m.until(kept, "delivered", 2)
    assert len(sink.requests("/gone")) == 1


class CountingRoutes(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.routes = 0

    async def route(
        self, log: str, upto: int, deliveries: Sequence[tuple[int, str]], *, ordered: Collection[str] = ()
    ) -> None:
        self.routes += 1
        await super().route(log, upto, deliveries, ordered=ordered)


async def test_a_broker_without_subscriptions_pauses_until_a_plan_update(sink: RecordingSink) -> None:
    store, t = CountingRoutes(), name("late")
    routes = {"order.created": [t]}
    # A pause longer than any deadline here: only the update can end it.
    config = DispatcherConfig(default_timeout=5.0, empty_pause=60.0)
    async with mesh(broker(routes), store=store, config=config) as m:
        await m.send(event())
        await eventually(lambda: store.routes == 1, what="the first route")
        for _ in range(10):
            await m.send(event())
            await asyncio.sleep(0.01)  # the router would wake for each of these
        assert store.routes == 1
        await m.dispatcher.apply(broker(routes, sub(t, sink.url_for("/late"))))
        await m.send(event())
        # Routed once the update ended the pause: the ten accepted during it, and the last.
        await m.until(t, "delivered", 11)
        await m.settled()
    assert len(sink.requests("/late")) == 11


async def test_idle_worker_hibernates_and_wakes_for_new_events(sink: RecordingSink) -> None:
    t = name("sleepy")
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/" + t)))) as m:
        await eventually(lambda: t not in m.dispatcher.awake(), what=f"{t} hibernating")
        for round_ in (1, 2):
            await m.send(event())
            await m.until(t, "delivered", round_)
            await eventually(lambda: t not in m.dispatcher.awake(), what=f"{t} hibernating again")


async def test_hibernating_worker_is_polled_for_unannounced_deliveries(
    sink: RecordingSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Deliveries routed where no notify reaches this dispatcher (another process, or claims
    # that expired elsewhere) are found by the sweep of hibernating workers.
    monkeypatch.setattr("broker.delivery.dispatcher.POLL_INTERVAL", 0.2)
    t = name("polled")
    async with mesh(broker({}, sub(t, sink.url_for("/" + t)))) as m:
        await eventually(lambda: t not in m.dispatcher.awake(), what=f"{t} hibernating")
        await m.store.append("elsewhere/log", [event()])
        (entry,) = await m.store.read("elsewhere/log", 0, 10)
        await m.store.route("elsewhere/log", entry.seq, [(entry.seq, t)])
        await m.until(t, "delivered", 1)
        await m.settled()


async def test_no_sweep_where_the_store_announces_every_delivery(sink: RecordingSink) -> None:
    t = name("unpolled")
    config = DispatcherConfig(default_timeout=5.0, poll_idle=False)
    async with mesh(broker({"order.created": [t]}, sub(t, sink.url_for("/" + t))), config=config) as m:
        assert m.dispatcher._sweeper is None
        await eventually(lambda: t not in m.dispatcher.awake(), what=f"{t} hibernating")
        await m.send(event())  # announced by the router: still delivered
        await m.until(t, "delivered", 1)


async def test_pending_deliveries_of_many_subscriptions_resume_in_start_batches(sink: RecordingSink) -> None:
    # More subscriptions than one start batch, each with a delivery pending from before the
    # start: every worker makes its first claim, batch after batch.
    store = MemoryStore()
    await store.open()
    subs = [sub(name(f"resume{k}"), sink.url_for(f"/resume/{k}")) for k in range(START_BATCH * 2 + 5)]
    await store.append("earlier/log", [event()])
    (entry,) = await store.read("earlier/log", 0, 10)
    await store.route("earlier/log", entry.seq, [(entry.seq, s.name) for s in subs])
    async with mesh(broker({}, *subs), store=store) as m:
        for s in subs:
            await m.until(s.name, "delivered", 1)
        await m.settled()


async def test_subscriptions_start_dormant_where_nothing_is_pending(sink: RecordingSink) -> None:
    # A store only this process uses, holding nothing pending: no worker exists until the
    # router announces a delivery, and the counters still list every subscription.
    hit, idle = name("woken"), name("dormant")
    config = DispatcherConfig(default_timeout=5.0, poll_idle=False, start_dormant=True)
    plans = broker({"order.created": [hit]}, sub(hit, sink.url_for("/hit")), sub(idle, sink.url_for("/idle")))
    async with mesh(plans, config=config) as m:
        assert m.dispatcher._workers == {}
        assert set(m.dispatcher.stats()) == {hit, idle} and m.dispatcher.awake() == []
        await m.send(event())
        await m.until(hit, "delivered", 1)
        assert set(m.dispatcher._workers) == {hit}
        assert m.dispatcher.stats()[idle]["delivered"] == 0
        # A dormant subscription removed and one added later: still nothing to run.
        late = name("late")
        await m.dispatcher.apply(broker({"order.created": [hit, late]}, sub(hit, sink.url_for("/hit")),
                                        sub(late, sink.url_for("/late"))))
        assert set(m.dispatcher.stats()) == {hit, late} and set(m.dispatcher._workers) == {hit}
        await m.send(event())
        await m.until(late, "delivered", 1)
        await m.until(hit, "delivered", 2)
    assert len(sink.requests("/idle")) == 0


async def test_no_sweep_still_starts_every_worker_on_a_shared_store(sink: RecordingSink) -> None:
    # Kafka: no sweep, but every subscription makes its first claim, so that the store follows
    # it and its watch can tell of deliveries other processes route.
    hit, idle = name("claimed"), name("claimed-idle")
    config = DispatcherConfig(default_timeout=5.0, poll_idle=False)
    plans = broker({"order.created": [hit]}, sub(hit, sink.url_for("/hit")), sub(idle, sink.url_for("/idle")))
    async with mesh(plans, config=config) as m:
        assert m.dispatcher._sweeper is None
        await eventually(lambda: set(m.dispatcher._workers) == {hit, idle}, what="both workers")
        await asyncio.gather(*(w.first_claim() for w in m.dispatcher._workers.values()))
        await m.send(event())
        await m.until(hit, "delivered", 1)


async def test_pending_deliveries_start_workers_even_without_polling(sink: RecordingSink) -> None:
    # Something pending at the start: every subscription gets its worker and first claim.
    store = MemoryStore()
    await store.open()
    t = name("resumed")
    await store.append("earlier/log", [event()])
    (entry,) = await store.read("earlier/log", 0, 10)
    await store.route("earlier/log", entry.seq, [(entry.seq, t)])
    config = DispatcherConfig(default_timeout=5.0, poll_idle=False, start_dormant=True)
    async with mesh(broker({}, sub(t, sink.url_for("/resumed"))), config=config, store=store) as m:
        await m.until(t, "delivered", 1)
        await m.settled()


class BuiltOnRead(Mapping[str, SubscriptionPlan]):
    """Subscriptions whose plans are new objects on every read, counted per name (as the
    control plane's are built from the declared Triggers)."""

    def __init__(self, *plans: SubscriptionPlan) -> None:
        self._plans = {p.name: p for p in plans}
        self.reads: dict[str, int] = {}

    def __getitem__(self, key: str) -> SubscriptionPlan:
        self.reads[key] = self.reads.get(key, 0) + 1
        return dataclasses.replace(self._plans[key])

    def __contains__(self, key: object) -> bool:
        return key in self._plans

    def __iter__(self) -> Iterator[str]:
        return iter(self._plans)

    def __len__(self) -> int:
        return len(self._plans)


async def test_plans_are_read_only_where_a_worker_uses_them(
    sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="broker.delivery.dispatcher")
    hit, idle = name("read"), name("unread")
    subs = BuiltOnRead(sub(hit, sink.url_for("/hit")), sub(idle, sink.url_for("/idle")))
    plans = {LOG: BrokerPlan(log=LOG, matcher=TypeMatcher({"order.created": [hit]}), subscriptions=subs)}
    config = DispatcherConfig(default_timeout=5.0, poll_idle=False, start_dormant=True)
    async with mesh(plans, config=config) as m:
        assert subs.reads == {}  # both dormant
        await m.send(event())
        await m.until(hit, "delivered", 1)
        assert subs.reads.get(idle, 0) == 0 and m.dispatcher._workers[hit].plan == subs._plans[hit]
        # Routing more batches reads no plan again (whether it is ordered is remembered).
        reads = subs.reads[hit]
        for delivered in (2, 3):
            await m.send(event())
            await m.until(hit, "delivered", delivered)
        assert subs.reads[hit] == reads
        # Applied again, an equal plan read afresh leaves the running worker's plan as it was.
        worker_plan = m.dispatcher._workers[hit].plan
        await m.dispatcher.apply(plans)
        assert m.dispatcher._workers[hit].plan is worker_plan
        assert subs.reads.get(idle, 0) == 0
    assert len(sink.requests("/hit")) == 3
