"""Destination resolution (Knative's "Destination Resolution") and effective delivery settings.

A :class:`~weir.manifests.model.Destination` becomes one absolute URL:

* ``uri`` alone: used as written (validation made sure it is absolute http(s)).
* ``ref`` (its namespace defaults to the referrer's):

  - ``eventing.knative.dev/v1`` Broker: the Broker's ingress URL, if the Broker exists;
  - ``sinks.knative.dev/v1alpha1`` IntegrationSink: the in-process sink's URL, if it exists;
  - ``v1`` Service or ``serving.knative.dev/v1`` Service: the URL mapped with
    ``--resolve NAMESPACE/NAME=URL``, else ``http://NAME.NAMESPACE.svc.cluster.local`` (the
    cluster domain is configurable);
  - any other kind cannot be resolved.

* ``ref`` plus a relative ``uri``: the ``uri`` is resolved against the ref's URL taken as a
  directory, so ``http://h/x`` + ``y`` is ``http://h/x/y``, ``http://h/x`` + ``/y`` is
  ``http://h/y`` and ``http://h/x`` + ``?q=1`` is ``http://h/x?q=1``.

Delivery precedence follows the Knative spec (whole-object replacement, MT Broker semantics): a
Trigger with ``spec.delivery`` uses only its own settings; a Trigger without one uses its
Broker's; a Broker without one gets Knative's ``config-br-defaults`` (10 retries, exponential,
``PT0.2S``). A delivery block that sets only some fields leaves the others at Knative's zero
values (no retries), it does not inherit them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from broker.delivery.spec import BROKER_DEFAULT_DELIVERY, DeliverySpec
from broker.errors import WeirError
from weir.manifests.kinds import EVENTING_V1, SINKS_V1ALPHA1
from weir.manifests.model import Broker, DeliveryOptions, Destination, KRef, Trigger

_SERVICES = {("v1", "Service"), ("serving.knative.dev/v1", "Service")}
_UNSET = DeliverySpec()


class UnresolvedDestination(WeirError):
    """A destination that cannot be turned into a URL now: the referenced Broker or sink does not
    exist, or the kind is not addressable by Weir. The referrer is not Ready until it resolves."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolveContext:
    """What references resolve against."""

    broker_url: Callable[[str, str], str | None]
    """``(namespace, name)`` -> the Broker's ingress URL, or ``None`` if it is not declared."""
    sink_url: Callable[[str, str], str | None]
    """``(namespace, name)`` -> the IntegrationSink's URL, or ``None`` if it is not declared."""
    service_map: Mapping[tuple[str, str], str]
    """``(namespace, name)`` of a Service -> its URL (``--resolve NAMESPACE/NAME=URL``)."""
    cluster_domain: str = "cluster.local"


def resolve(dest: Destination, *, namespace: str, ctx: ResolveContext) -> str:
    """The absolute URL of ``dest`` declared in ``namespace``. Raises UnresolvedDestination."""
    if dest.ref is None:
        if not dest.uri:
            raise UnresolvedDestination("the destination has neither ref nor uri")
        return dest.uri
    base = _ref_url(dest.ref, namespace, ctx)
    if not dest.uri:
        return base
    parts = urlsplit(base)
    relative_path = urlsplit(dest.uri).path
    # A relative path extends the ref's URL (as under a directory); a query or fragment alone
    # keeps its path unchanged.
    if relative_path and not relative_path.startswith("/") and not parts.path.endswith("/"):
        base = urlunsplit(parts._replace(path=parts.path + "/"))
    return urljoin(base, dest.uri)


def _ref_url(ref: KRef, namespace: str, ctx: ResolveContext) -> str:
    ns = ref.namespace or namespace
    target = (ref.api_version, ref.kind)
    if target == (EVENTING_V1, "Broker"):
        url = ctx.broker_url(ns, ref.name)
    elif target == (SINKS_V1ALPHA1, "IntegrationSink"):
        url = ctx.sink_url(ns, ref.name)
    elif target in _SERVICES:
        mapped = ctx.service_map.get((ns, ref.name))
        return mapped or f"http://{ref.name}.{ns}.svc.{ctx.cluster_domain}"
    else:
        raise UnresolvedDestination(
            f"cannot resolve a reference to kind {ref.kind} (apiVersion {ref.api_version}): Weir resolves "
            "Brokers, IntegrationSinks and Services"
        )
    if url is None:
        raise UnresolvedDestination(f"{ref.kind} {ns}/{ref.name} does not exist")
    return url


def effective_delivery(trigger: Trigger, broker: Broker | None) -> DeliveryOptions | None:
    """The delivery block that governs ``trigger``: its own, else its Broker's (never merged)."""
    if trigger.delivery is not None:
        return trigger.delivery
    return broker.delivery if broker is not None else None


def delivery_spec(options: DeliveryOptions | None, *, namespace: str, ctx: ResolveContext) -> DeliverySpec:
    """The kernel's settings for ``options`` (from :func:`effective_delivery`); ``None`` gives
    the Broker default. Raises UnresolvedDestination when ``deadLetterSink`` does not resolve."""
    if options is None:
        return BROKER_DEFAULT_DELIVERY
    dls = options.dead_letter_sink
    return DeliverySpec(
        retry=options.retry if options.retry is not None else _UNSET.retry,
        backoff_policy="linear" if options.backoff_policy == "linear" else "exponential",
        backoff_delay=options.backoff_delay if options.backoff_delay is not None else _UNSET.backoff_delay,
        backoff_max=options.backoff_max,
        timeout=options.timeout,
        retry_after_max=(
            options.retry_after_max if options.retry_after_max is not None else _UNSET.retry_after_max
        ),
        dead_letter_sink=None if dls is None else resolve(dls, namespace=namespace, ctx=ctx),
        structured=options.format == "json",
    )
