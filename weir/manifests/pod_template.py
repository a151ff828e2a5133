"""A ContainerSource's ``spec.template`` (a Kubernetes PodTemplateSpec), read for running locally.

Knative requires ``spec.containers`` to be non-empty and every container to have a ``name`` and
an ``image``. Weir runs exactly one container as a local process, so it also requires a
``command`` and refuses a second container. What is used: ``command``, ``args``, ``env``
(``name``/``value``) and ``workingDir``.

Other Kubernetes fields fall in three groups:

* steering Kubernetes only (scheduling, service accounts, probes, resources, ports, security
  context, image pull policy, ...): accepted and ignored, so manifests written for a cluster load;
* needing Kubernetes to have their effect (volumes and mounts, ``envFrom``, ``valueFrom``,
  init containers, lifecycle hooks, a TTY): refused as "not supported outside Kubernetes";
* anything else: an unknown field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from weir.manifests.fields import MISSING, Problems, describe, join, obj, string, string_map

LOCAL_ONLY = "not supported outside Kubernetes"

_POD_IGNORED = (
    "activeDeadlineSeconds", "affinity", "automountServiceAccountToken", "dnsConfig", "dnsPolicy",
    "enableServiceLinks", "hostAliases", "hostIPC", "hostNetwork", "hostPID", "hostUsers", "hostname",
    "imagePullSecrets", "nodeName", "nodeSelector", "os", "overhead", "preemptionPolicy", "priority",
    "priorityClassName", "readinessGates", "resourceClaims", "restartPolicy", "runtimeClassName",
    "schedulerName", "schedulingGates", "securityContext", "serviceAccount", "serviceAccountName",
    "setHostnameAsFQDN", "shareProcessNamespace", "subdomain", "terminationGracePeriodSeconds",
    "tolerations", "topologySpreadConstraints",
)  # fmt: skip
_POD_LOCAL_ONLY = ("volumes", "initContainers", "ephemeralContainers")
_CONTAINER_FIELDS = ("name", "image", "command", "args", "env", "workingDir")
_CONTAINER_IGNORED = (
    "imagePullPolicy", "livenessProbe", "ports", "readinessProbe", "resizePolicy", "resources",
    "restartPolicy", "securityContext", "startupProbe", "terminationMessagePath",
    "terminationMessagePolicy",
)  # fmt: skip
_CONTAINER_LOCAL_ONLY = ("envFrom", "lifecycle", "stdin", "stdinOnce", "tty", "volumeDevices", "volumeMounts")
_NO_COMMAND = f"{MISSING}: Weir runs the command locally (image is used only on Kubernetes)"


@dataclass(frozen=True, slots=True, kw_only=True)
class Container:
    """The one container Weir runs."""

    name: str
    image: str
    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    """``(name, value)`` in declaration order; a repeated name's last value wins when run."""
    working_dir: str | None


def pod_template(value: Any, path: str, problems: Problems) -> Container | None:
    """The container of the PodTemplateSpec at ``path`` (required), or ``None`` with problems."""
    if value is None:
        problems.add(path, MISSING)
        return None
    template = obj(value, path, problems, known=("metadata", "spec"))
    if template is None:
        return None
    if template.get("metadata") is not None:
        at = join(path, "metadata")
        meta = obj(template["metadata"], at, problems, known=("name", "labels", "annotations"))
        if meta is not None:
            string(meta.get("name"), join(at, "name"), problems)
            string_map(meta.get("labels"), join(at, "labels"), problems)
            string_map(meta.get("annotations"), join(at, "annotations"), problems)
    at = join(path, "spec")
    known = ("containers", *_POD_LOCAL_ONLY)
    pod = obj(template.get("spec") or {}, at, problems, known=known, ignored=_POD_IGNORED)
    if pod is None:
        return None
    _local_only(pod, at, _POD_LOCAL_ONLY, problems)
    containers = pod.get("containers")
    at = join(at, "containers")
    if containers is None or containers == []:
        problems.add(at, MISSING)
        return None
    if not isinstance(containers, list):
        problems.add(at, f"must be a list, got {describe(containers)}")
        return None
    if len(containers) > 1:
        problems.add(join(at, 1), f"Weir runs one container per ContainerSource, got {len(containers)}")
    return _container(containers[0], join(at, 0), problems)


def _container(value: Any, path: str, problems: Problems) -> Container | None:
    before = len(problems)
    known = (*_CONTAINER_FIELDS, *_CONTAINER_LOCAL_ONLY)
    fields = obj(value, path, problems, known=known, ignored=_CONTAINER_IGNORED)
    if fields is None:
        return None
    _local_only(fields, path, _CONTAINER_LOCAL_ONLY, problems)
    name = string(fields.get("name"), join(path, "name"), problems, required=True)
    image = string(fields.get("image"), join(path, "image"), problems, required=True)
    command = strings(fields.get("command"), join(path, "command"), problems)
    if fields.get("command") in (None, []):
        problems.add(join(path, "command"), _NO_COMMAND)
    args = strings(fields.get("args"), join(path, "args"), problems)
    env = _env(fields.get("env"), join(path, "env"), problems)
    working_dir = string(fields.get("workingDir"), join(path, "workingDir"), problems)
    if len(problems) > before or name is None or image is None:
        return None
    return Container(name=name, image=image, command=command, args=args, env=env, working_dir=working_dir)


def _local_only(fields: dict[str, Any], path: str, names: tuple[str, ...], problems: Problems) -> None:
    for name in names:
        if name in fields:
            problems.add(join(path, name), LOCAL_ONLY)


def strings(value: Any, path: str, problems: Problems) -> tuple[str, ...]:
    """A list of strings (``()`` when absent or wrong; each wrong item is reported)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(path, f"must be a list of strings, got {describe(value)}")
        return ()
    for i, item in enumerate(value):
        if not isinstance(item, str):
            problems.add(join(path, i), f"must be a string (quote it), got {describe(item)}")
    return tuple(item for item in value if isinstance(item, str))


def _env(value: Any, path: str, problems: Problems) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.add(path, f"must be a list of {{name, value}} objects, got {describe(value)}")
        return ()
    env: list[tuple[str, str]] = []
    for i, item in enumerate(value):
        at = join(path, i)
        fields = obj(item, at, problems, known=("name", "value", "valueFrom"))
        if fields is None:
            continue
        name = string(fields.get("name"), join(at, "name"), problems, required=True)
        raw = fields.get("value")
        if raw is not None and not isinstance(raw, str):
            problems.add(join(at, "value"), f"must be a string (quote it), got {describe(raw)}")
        if fields.get("valueFrom") is not None:
            problems.add(join(at, "valueFrom"), LOCAL_ONLY)
        if name is not None:
            env.append((name, raw if isinstance(raw, str) else ""))
    return tuple(env)
