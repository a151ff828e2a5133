"""When a NATS store claim should fetch: from the fan consumer, and from a subscription's own.

A fetch from an empty consumer still costs a request and its answer, and with fan messages a
thousand Triggers' claims would each make one after every route. So a claim fetches from a
consumer only while messages may be waiting there: after news of some (this handle's routes,
other handles' wake notices, deliveries this handle published again), while the last fetch
came back full, and otherwise every :data:`OWN_EVERY` or :data:`FAN_EVERY` seconds, in case a
notice was lost. News that comes while a fetch is under way keeps the consumer due.
"""

from __future__ import annotations

import math
from collections.abc import Collection

OWN_EVERY = 5.0
"""Seconds after which a subscription's own consumer is due anyway (a worker's poll interval)."""
FAN_EVERY = 1.0
"""Seconds after which the fan consumer is due anyway."""


class Due:
    """Which consumers may have messages waiting; see the module docstring."""

    def __init__(self) -> None:
        self._own: dict[str, float] = {}
        """subscription -> when its last fetch found nothing more (absent: due)."""
        self._news: dict[str, int] = {}
        self._fan_at = -math.inf
        self._fan_more = True
        self._fan_news = 0

    def own(self, subscription: str, now: float) -> bool:
        """Whether ``subscription``'s own consumer is due at loop time ``now``."""
        at = self._own.get(subscription)
        return at is None or now - at >= OWN_EVERY

    def start(self, subscription: str) -> int:
        """A fetch from ``subscription``'s consumer starts; pass the result to :meth:`pulled`."""
        return self._news.get(subscription, 0)

    def pulled(self, subscription: str, now: float, *, more: bool, started: int) -> None:
        """The fetch ended; ``more``: it came back full, so more may be waiting."""
        if more or self._news.get(subscription, 0) != started:
            self._own.pop(subscription, None)
        else:
            self._own[subscription] = now

    def hint(self, subscriptions: Collection[str]) -> None:
        """Messages of their own may be waiting for ``subscriptions``."""
        for sub in subscriptions:
            self._own.pop(sub, None)
            self._news[sub] = self._news.get(sub, 0) + 1

    def forget(self, subscription: str) -> None:
        self._own.pop(subscription, None)
        self._news.pop(subscription, None)

    def fan(self, now: float) -> bool:
        """Whether the fan consumer is due at loop time ``now``."""
        return self._fan_more or now - self._fan_at >= FAN_EVERY

    def fan_start(self) -> int:
        return self._fan_news

    def fan_pulled(self, now: float, *, more: bool, started: int) -> None:
        self._fan_at = now
        self._fan_more = more or self._fan_news != started

    def news(self, direct: Collection[str], fanned: bool) -> None:
        """A route wrote messages of their own for ``direct``, and fan messages if ``fanned``."""
        self.hint(direct)
        if fanned:
            self._fan_more = True
            self._fan_news += 1
