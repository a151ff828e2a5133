"""Weir's manifests: Knative YAML in, validated resources out.

Weir reads the same YAML you would ``kubectl apply`` to a Knative cluster, with Knative's field
names, and checks it the way Knative's admission webhook does, so a manifest Weir accepts is one
Knative accepts (for the kinds Weir supports)::

    from weir.manifests import load_paths

    result = load_paths(["deploy/"])          # files or directories (*.yaml, *.yml, recursive)
    for problem in result.problems:           # never raises for bad content
        print(problem)                        # deploy/x.yaml:12: Trigger default/orders: spec...: reason
    result.resources                          # [Broker, Trigger, IntegrationSink, ...]

Kinds
    ``Broker``, ``Trigger`` (``eventing.knative.dev/v1``) and ``IntegrationSink``
    (``sinks.knative.dev/v1alpha1`` with ``spec.log``). Any other kind, and IntegrationSinks with
    ``spec.aws``, are refused as "not supported yet" rather than ignored.

Rules
    ``metadata.name`` is required (DNS-1123 subdomain); ``metadata.namespace`` defaults to
    ``default``; annotations and labels are maps of strings. Unknown fields are refused at every
    level (``unknown field "spec.foo"``). Empty documents are skipped. A ``Kind namespace/name``
    may be declared once per set. Trigger filters are checked by
    :func:`triggers.filters.check_filters`. Per-kind rules: :mod:`weir.manifests.kinds`;
    Destination and DeliverySpec rules: :mod:`weir.manifests.duck`.

Updates
    :func:`check_immutable` refuses changes Knative refuses (a Trigger's Broker, a Broker's
    ``spec.config`` and class); see :mod:`weir.manifests.immutable`.

Resolution
    :mod:`weir.manifests.resolve` turns destinations into URLs and picks the delivery settings
    each Trigger runs with.
"""

from __future__ import annotations

from weir.manifests.immutable import check_immutable
from weir.manifests.loader import load_paths, load_text
from weir.manifests.model import (
    Broker,
    DeliveryOptions,
    Destination,
    IntegrationSink,
    KRef,
    LoadResult,
    Origin,
    Resource,
    Trigger,
)

__all__ = [
    "Broker",
    "DeliveryOptions",
    "Destination",
    "IntegrationSink",
    "KRef",
    "LoadResult",
    "Origin",
    "Resource",
    "Trigger",
    "check_immutable",
    "load_paths",
    "load_text",
]
