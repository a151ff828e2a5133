"""Validated source resources (``sources.knative.dev``), and how each becomes a running source.

Every source kind shares Knative's Source duck: ``spec.sink`` (a Destination, required) and
``spec.ceOverrides.extensions`` (extensions added to every event; never a context attribute).
:class:`SourceResource` holds those; each kind adds its own typed fields and, when Weir runs it,
a ``config()`` (the frozen config the runtime takes, also the "did it change" key) and a
``plan(...)`` giving the :class:`~sources.manager.SourcePlan` the control plane hands to the
:class:`~sources.manager.SourceManager`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sources.container
import sources.ping
from sources.base import Emitter, Source, SourceStatus
from sources.manager import SourcePlan
from sources.schedule import Schedule
from weir.manifests.model import Destination, Resource

CATCH_UP_ANNOTATION = "weir.dev/catch-up"
"""PingSource annotation: ``"true"`` fires ticks missed while Weir was down (see :mod:`sources.ping`)."""

SINK_BINDING_STATUS = SourceStatus(
    ready=False,
    reason="KubernetesOnly",
    message="SinkBinding injects K_SINK into Kubernetes workloads; not available locally",
)
"""The status of every SinkBinding: validated and loaded, but there is nothing to bind locally."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceResource(Resource):
    """Any source: the sink its events go to and its ``ceOverrides.extensions`` (empty if none)."""

    sink: Destination
    ce_overrides: Mapping[str, str] = field(default_factory=dict)

    @property
    def overrides(self) -> tuple[tuple[str, str], ...]:
        """``ce_overrides`` as sorted pairs, hashable for a frozen config."""
        return tuple(sorted(self.ce_overrides.items()))


@dataclass(frozen=True, slots=True, kw_only=True)
class PingSource(SourceResource):
    """``sources.knative.dev/v1`` (or ``v1beta2``) PingSource.

    ``data`` is ``spec.data`` as UTF-8 or ``spec.dataBase64`` decoded (``None``: no data);
    ``catch_up`` is the ``weir.dev/catch-up`` annotation.
    """

    schedule: Schedule
    content_type: str | None = None
    data: bytes | None = None
    catch_up: bool = False

    def config(self) -> sources.ping.PingConfig:
        return sources.ping.PingConfig(
            namespace=self.namespace,
            name=self.name,
            schedule=self.schedule,
            content_type=self.content_type,
            data=self.data,
            ce_overrides=self.overrides,
            catch_up=self.catch_up,
        )

    def plan(self, *, sink_uri: str, state_dir: Path | None = None) -> SourcePlan:
        """The plan to run this PingSource; ``state_dir`` keeps catch-up state (needed for it)."""
        config = self.config()

        def build(emitter: Emitter) -> Source:
            return sources.ping.PingSource(config, emitter=emitter, state_dir=state_dir)

        return SourcePlan(key=self.key, spec=config, sink_uri=sink_uri, build=build)


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerSource(SourceResource):
    """``sources.knative.dev/v1`` ContainerSource: ``spec.template.spec.containers[0]``, which
    validation made sure has a ``command`` (``image`` is kept but used only on Kubernetes)."""

    container_name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    working_dir: str | None = None

    def config(self) -> sources.container.ContainerConfig:
        return sources.container.ContainerConfig(
            namespace=self.namespace,
            name=self.name,
            command=self.command,
            args=self.args,
            env=self.env,
            working_dir=self.working_dir,
            image=self.image,
            ce_overrides=self.overrides,
        )

    def plan(
        self,
        *,
        sink_uri: str,
        base_env: Mapping[str, str] | None = None,
        restart: sources.container.RestartPolicy | None = None,
    ) -> SourcePlan:
        """The plan to run this ContainerSource. The process posts to ``sink_uri`` itself, so the
        emitter is not used. ``base_env`` is the environment the process inherits."""
        config = self.config()
        inherited = dict(base_env or {})

        def build(emitter: Emitter) -> Source:
            return sources.container.ContainerSource(
                config, sink_uri=sink_uri, base_env=inherited, restart=restart
            )

        return SourcePlan(key=self.key, spec=config, sink_uri=sink_uri, build=build)


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    """A SinkBinding's ``spec.subject``: one object by ``name``, or every match of ``selector``
    (a LabelSelector, as written). ``namespace`` is ``None`` when the binding's applies."""

    api_version: str
    kind: str
    namespace: str | None = None
    name: str | None = None
    selector: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkBinding(SourceResource):
    """``sources.knative.dev/v1`` SinkBinding. Loaded and validated; its status is always
    :data:`SINK_BINDING_STATUS` (Kubernetes only: there are no pods to inject ``K_SINK`` into)."""

    subject: Subject
