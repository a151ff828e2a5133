"""The validated resources a manifest set declares, as immutable values.

A resource exists only when its document passed every check, so consumers never re-validate:
names are DNS-1123, durations are seconds (float), destinations have a ``ref`` or an absolute
``uri``. ``spec`` keeps the document's ``spec`` exactly as written (for status views and for
spotting a changed generation), compactly when loaded from YAML (a read-only
:class:`~weir.manifests.frozen.FrozenSpec`); the typed fields are what Weir acts on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BROKER_CLASS_ANNOTATION = "eventing.knative.dev/broker.class"
DEFAULT_BROKER_CLASS = "MTChannelBasedBroker"
"""The class Knative's webhook fills in when a Broker has no class annotation."""


class Origin:
    """Where a document came from: ``file`` as given, ``index`` its position in the file
    (from 1, counting empty documents), ``line`` its first line (from 1) when known.

    Immutable; equal when all three are. Index and line are held as one integer: every declared
    resource keeps its origin, and beyond the first 256 each integer is an object of its own.
    """

    __slots__ = ("_at", "file")

    file: str
    _at: int

    def __init__(self, *, file: str, index: int, line: int | None) -> None:
        if index < 0 or (line is not None and not 0 < line < 1 << 32):
            raise ValueError(f"index and line count from 1, got {index} and {line}")
        object.__setattr__(self, "file", file)
        # line 0 stands for "unknown"
        object.__setattr__(self, "_at", index << 32 | (line or 0))

    @property
    def index(self) -> int:
        return self._at >> 32

    @property
    def line(self) -> int | None:
        return self._at & 0xFFFFFFFF or None

    @property
    def where(self) -> str:
        """``file:line`` (or just ``file``), the prefix of every problem about the document."""
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Origin is immutable (cannot set {name})")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Origin):
            return NotImplemented
        return self.file == other.file and self._at == other._at

    def __hash__(self) -> int:
        return hash((self.file, self._at))

    def __repr__(self) -> str:
        return f"Origin(file={self.file!r}, index={self.index!r}, line={self.line!r})"


@dataclass(frozen=True, slots=True, kw_only=True)
class KRef:
    """A Knative ``KReference``. ``namespace`` is ``None`` when the referrer's namespace applies."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    """Knative ``duckv1.Destination``: a ``ref``, an absolute ``uri``, or a ``ref`` plus a ``uri``
    relative to the ref's URL. At least one is set."""

    ref: KRef | None = None
    uri: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliveryOptions:
    """A ``spec.delivery`` block as written; ``None`` means the field was absent.

    Durations are seconds. :func:`weir.manifests.resolve.delivery_spec` turns this into the
    kernel's :class:`~broker.delivery.spec.DeliverySpec` (defaults filled, sink resolved).
    """

    retry: int | None = None
    backoff_policy: str | None = None
    """``"linear"`` or ``"exponential"``."""
    backoff_delay: float | None = None
    timeout: float | None = None
    retry_after_max: float | None = None
    backoff_max: float | None = None
    format: str | None = None
    """``"json"`` (structured mode) or ``"binary"``."""
    dead_letter_sink: Destination | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Resource:
    """What every declared object has. ``generation`` starts at 1; the control plane raises it
    when ``spec`` or ``annotations`` change between applies."""

    api_version: str
    kind: str
    namespace: str
    name: str
    annotations: Mapping[str, str]
    labels: Mapping[str, str]
    spec: Mapping[str, Any]
    origin: Origin
    generation: int = 1

    @property
    def key(self) -> tuple[str, str, str]:
        """``(kind, namespace, name)``: unique within a manifest set."""
        return (self.kind, self.namespace, self.name)

    @property
    def label(self) -> str:
        """``Kind namespace/name``, how problems name the resource."""
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Broker(Resource):
    """``eventing.knative.dev/v1`` Broker. ``delivery`` is the default for its Triggers."""

    delivery: DeliveryOptions | None = None

    @property
    def broker_class(self) -> str:
        """The class annotation, defaulted as Knative does. Weir runs every class the same way."""
        return self.annotations.get(BROKER_CLASS_ANNOTATION, DEFAULT_BROKER_CLASS)


@dataclass(frozen=True, slots=True, kw_only=True)
class Trigger(Resource):
    """``eventing.knative.dev/v1`` Trigger.

    ``broker`` names a Broker in the Trigger's namespace (from ``spec.broker`` or
    ``spec.brokerRef``). ``ordered`` comes from the annotation
    ``kafka.eventing.knative.dev/delivery.order`` (default unordered); ``max_in_flight`` from
    ``weir.dev/max-in-flight`` (``None``: the dispatcher's default).
    """

    broker: str
    delivery: DeliveryOptions | None = None
    ordered: bool = False
    max_in_flight: int | None = None

    # Read from ``spec`` rather than kept: a Trigger's subscriber and filter are needed only
    # when a set is applied, tested or viewed, or a worker starts; a copy would cost every
    # declared Trigger (the subscriber with its URI about 120 bytes).
    @property
    def subscriber(self) -> Destination:
        """``spec.subscriber``, already accepted when the Trigger was loaded; a new value on each
        read (each read decodes ``spec``)."""
        # Imported here: the parser builds this module's types.
        from weir.manifests.duck import accepted_destination

        return accepted_destination(self.spec["subscriber"])

    @property
    def filter_(self) -> Any:
        """The raw ``spec.filter`` value (``None`` when absent), already accepted by
        :func:`triggers.filters.check_filters`; read it once per use (each read decodes ``spec``)."""
        return self.spec.get("filter")

    @property
    def filters(self) -> Any:
        """The raw ``spec.filters`` value (``None`` when absent), already accepted by
        :func:`triggers.filters.check_filters`; read it once per use (each read decodes ``spec``)."""
        return self.spec.get("filters")


@dataclass(frozen=True, slots=True, kw_only=True)
class IntegrationSink(Resource):
    """``sinks.knative.dev/v1alpha1`` IntegrationSink with ``spec.log``: the Camel log options as
    written (``loggerName``, ``level``, ``showHeaders``, ``showBody``, ...)."""

    log: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    """Every valid resource, and every problem as one line (``file:line: document: path: reason``).

    A set with problems must not be applied: ``resources`` then holds only the documents that
    passed, so applying it would silently drop the others.
    """

    resources: list[Resource]
    problems: list[str]
