"""Stream, subject, consumer and key names of the NATS store, all derived from one prefix.

A log or subscription name ``"<namespace>/<name>"`` whose parts are DNS-1123 labels (what
Kubernetes allows) maps to the subject tokens ``<namespace>.<name>`` and to the identifier
``<namespace>_<name>`` (streams, consumers, KV keys). DNS labels never contain ``_``, so the
identifier is unambiguous. Any other name (e.g. ``"PingSource:ns/tick"``) maps to ``_`` plus
its UTF-8 bytes in lowercase base32, which no DNS name can produce.

==========================  ==========================================  ==============================
what                        stream / bucket                             subject
==========================  ==========================================  ==============================
log ``ns/b``                ``<PREFIX>_LOG_ns_b``                       ``<prefix>.log.ns.b.<count>``
pending deliveries          ``<PREFIX>_DELIVERIES`` (work queue)        ``<prefix>.dl.<ns>.<trigger>``
fan messages                ``<PREFIX>_DELIVERIES``                     ``<prefix>.dl.fan``
dead letters                ``<PREFIX>_DEAD``                           ``<prefix>.dead.<ns>.<broker>``
router cursors              KV ``<PREFIX>_CURSORS``, key ``ns_b``
routing leases              KV ``<PREFIX>_LEASES``, key ``ns_b``
new entries in a log        (core NATS)                                 ``<prefix>.head.ns.b``
deliveries routed           (core NATS)                                 ``<prefix>.wake``
==========================  ==========================================  ==============================

``<count>``, the last token of a log message's subject, is the number of events the message
holds, so per-subject message counts give the number of events without reading a message.
Delivery subjects carry no count: each is a consumer's filter, and JetStream (2.9) finds the
next message of a literal filter subject far faster than of a wildcard one (S3 with 1,000
Triggers: 2,354 against 528 deliveries/s).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

_LABEL = r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?"
_DNS_NAME = re.compile(rf"({_LABEL})/({_LABEL})")
_PREFIX = re.compile(r"[A-Za-z0-9](?:[-A-Za-z0-9]*[A-Za-z0-9])?")


def _encoded(name: str) -> str:
    return "_" + base64.b32encode(name.encode()).decode().rstrip("=").lower()


def name_id(name: str) -> str:
    """``ns_name`` for a DNS-style ``ns/name``, else ``_`` + base32: a stream/key-safe token."""
    found = _DNS_NAME.fullmatch(name)
    return f"{found[1]}_{found[2]}" if found else _encoded(name)


def name_tokens(name: str) -> str:
    """``ns.name`` for a DNS-style ``ns/name``, else ``_.`` + base32: subject tokens."""
    found = _DNS_NAME.fullmatch(name)
    return f"{found[1]}.{found[2]}" if found else "_." + _encoded(name)[1:]


@dataclass(frozen=True, slots=True)
class Names:
    """Every name the store uses, for one prefix (letters, digits and inner ``-``)."""

    prefix: str

    def __post_init__(self) -> None:
        if not _PREFIX.fullmatch(self.prefix):
            raise ValueError(f"invalid NATS store prefix {self.prefix!r}: use letters, digits and '-'")

    @property
    def _subject(self) -> str:
        return self.prefix.lower()

    @property
    def _stream(self) -> str:
        return self.prefix.upper()

    def log_stream(self, log: str) -> str:
        return f"{self._stream}_LOG_{name_id(log)}"

    def key_of_stream(self, stream: str) -> str:
        """The KV key of the log whose stream is ``stream``."""
        return stream.removeprefix(f"{self._stream}_LOG_")

    @property
    def log_streams(self) -> str:
        """The subject filter matching every log stream of this prefix."""
        return f"{self._subject}.log.>"

    def log_subject(self, log: str, count: int) -> str:
        return f"{self._subject}.log.{name_tokens(log)}.{count}"

    def log_subjects(self, log: str) -> str:
        return f"{self._subject}.log.{name_tokens(log)}.*"

    def head_subject(self, log: str) -> str:
        return f"{self._subject}.head.{name_tokens(log)}"

    @property
    def deliveries_stream(self) -> str:
        return f"{self._stream}_DELIVERIES"

    @property
    def deliveries_subjects(self) -> str:
        return f"{self._subject}.dl.>"

    def delivery_subject(self, subscription: str) -> str:
        return f"{self._subject}.dl.{name_tokens(subscription)}"

    @property
    def fan_subject(self) -> str:
        """Fan messages (:mod:`broker.store.nats_fan`): one token after ``dl``, where every
        subscription's subject has two, so it is nobody's."""
        return f"{self._subject}.dl.fan"

    def consumer(self, subscription: str) -> str:
        """The durable consumer that hands out ``subscription``'s deliveries."""
        return name_id(subscription)

    @property
    def dead_stream(self) -> str:
        return f"{self._stream}_DEAD"

    @property
    def dead_subjects(self) -> str:
        return f"{self._subject}.dead.>"

    def dead_subject(self, log: str) -> str:
        return f"{self._subject}.dead.{name_tokens(log)}"

    @property
    def cursors_bucket(self) -> str:
        return f"{self._stream}_CURSORS"

    @property
    def leases_bucket(self) -> str:
        return f"{self._stream}_LEASES"

    @property
    def wake_subject(self) -> str:
        return f"{self._subject}.wake"

    def key(self, log: str) -> str:
        """The KV key of ``log`` (cursor and lease)."""
        return name_id(log)


def event_count(subject: str) -> int:
    """The event count a log message's subject carries (its last token)."""
    return int(subject.rpartition(".")[2])
