"""Source kinds checked as Knative's webhook does: PingSource, ContainerSource, SinkBinding.

Shared by every source kind (:func:`source_duck`): ``spec.sink`` is a required Destination;
``spec.ceOverrides`` has only ``extensions``, a map of strings whose keys are CloudEvents
attribute names (lower-case letters and digits) and never a context attribute (``type``,
``id``, ``source``, ``time``, ...), which overrides cannot replace.

PingSource (``v1`` and ``v1beta2``): ``schedule`` and ``timezone`` per :mod:`sources.schedule`;
``data`` xor ``dataBase64`` (standard base64); with ``contentType: application/json`` the data
must be a JSON object. Annotation ``weir.dev/catch-up``: ``"true"`` or ``"false"``.

ContainerSource: ``spec.template`` per :mod:`weir.manifests.pod_template` (one container with a
``command``, run locally).

SinkBinding: ``spec.subject`` names its ``apiVersion`` and ``kind`` and exactly one of ``name``
and ``selector``; it loads, but only Kubernetes can bind (see
:data:`~weir.manifests.source_model.SINK_BINDING_STATUS`).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from broker.bindings.validate import check_name, validate
from broker.errors import InvalidEvent
from sources.emitter import CONTEXT_ATTRIBUTES
from sources.schedule import InvalidSchedule, parse_schedule
from weir.manifests.duck import destination
from weir.manifests.fields import (
    MISSING,
    Problems,
    describe,
    dns_label,
    join,
    obj,
    one_of,
    quote,
    string,
    string_map,
)
from weir.manifests.kinds import Common, Kind, annotation_path
from weir.manifests.model import Destination
from weir.manifests.pod_template import pod_template, strings
from weir.manifests.source_model import (
    CATCH_UP_ANNOTATION,
    ContainerSource,
    PingSource,
    SinkBinding,
    Subject,
)

SOURCES_V1 = "sources.knative.dev/v1"
SOURCES_V1BETA2 = "sources.knative.dev/v1beta2"
SOURCE_FIELDS = ("sink", "ceOverrides")
"""The Source duck's ``spec`` fields, for a kind's ``Kind(fields=...)``."""
JSON = "application/json"

_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def ce_overrides(value: Any, path: str, problems: Problems) -> dict[str, str]:
    """``ceOverrides`` (``{extensions: {name: value}}``) as the extensions map (empty when absent)."""
    if value is None:
        return {}
    fields = obj(value, path, problems, known=("extensions",))
    if fields is None:
        return {}
    at = join(path, "extensions")
    extensions = string_map(fields.get("extensions"), at, problems)
    for name in list(extensions):
        reason = None
        if name in CONTEXT_ATTRIBUTES:
            reason = f"{quote(name)} is a CloudEvents context attribute; ceOverrides can only set extensions"
        else:
            try:
                check_name(name)
            except InvalidEvent:
                reason = f"{quote(name)} is not a CloudEvents attribute name (lower-case a-z and 0-9 only)"
        if reason is not None:
            problems.add(join(at, name), reason)
            del extensions[name]
    return extensions


def source_duck(spec: dict[str, Any], problems: Problems) -> tuple[Destination | None, dict[str, str]]:
    """``spec.sink`` (required) and ``spec.ceOverrides.extensions`` of any source kind."""
    sink = destination(spec.get("sink"), "spec.sink", problems, required=True)
    return sink, ce_overrides(spec.get("ceOverrides"), "spec.ceOverrides", problems)


def _ping(common: Common, spec: dict[str, Any], problems: Problems) -> PingSource | None:
    sink, overrides = source_duck(spec, problems)
    text = string(spec.get("schedule"), "spec.schedule", problems) or ""
    zone = string(spec.get("timezone"), "spec.timezone", problems) or ""
    schedule = None
    try:
        schedule = parse_schedule(text, zone)
    except InvalidSchedule as exc:
        problems.add(f"spec.{exc.field}", exc.reason)
    content_type = string(spec.get("contentType"), "spec.contentType", problems)
    if content_type is not None and not _media_type(content_type):
        problems.add("spec.contentType", f"{quote(content_type)} is not a media type (type/subtype)")
    data = _ping_data(spec, content_type, problems)
    catch_up = one_of(
        common.annotations.get(CATCH_UP_ANNOTATION), annotation_path(CATCH_UP_ANNOTATION), problems,
        ("true", "false"),
    )  # fmt: skip
    if sink is None or schedule is None:
        return None
    return PingSource(
        **common.fields(),
        sink=sink,
        ce_overrides=overrides,
        schedule=schedule,
        content_type=content_type,
        data=data,
        catch_up=catch_up == "true",
    )


def _ping_data(spec: dict[str, Any], content_type: str | None, problems: Problems) -> bytes | None:
    text = string(spec.get("data"), "spec.data", problems)
    encoded = string(spec.get("dataBase64"), "spec.dataBase64", problems)
    if text is not None and encoded is not None:
        problems.add("spec.data, spec.dataBase64", "expected exactly one, got both")
        return None
    if encoded is not None:
        try:
            data = base64.b64decode(encoded, validate=True)
        except binascii.Error as exc:
            problems.add("spec.dataBase64", f"not valid base64: {exc}")
            return None
        path = "spec.dataBase64"
    elif text is not None:
        data, path = text.encode("utf-8"), "spec.data"
    else:
        return None
    if content_type == JSON:
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            problems.add(path, f"not valid JSON ({exc}) but contentType is {JSON}")
            return None
        if not isinstance(parsed, dict):
            problems.add(path, f"must be a JSON object when contentType is {JSON}, got {_json_kind(parsed)}")
            return None
    return data


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    return "null" if value is None else describe(value)


def _media_type(text: str) -> bool:
    probe = {"specversion": "1.0", "id": "x", "source": "x", "type": "x", "datacontenttype": text}
    try:
        validate(probe)
    except InvalidEvent:
        return False
    return True


def _container_source(common: Common, spec: dict[str, Any], problems: Problems) -> ContainerSource | None:
    sink, overrides = source_duck(spec, problems)
    container = pod_template(spec.get("template"), "spec.template", problems)
    if sink is None or container is None:
        return None
    return ContainerSource(
        **common.fields(),
        sink=sink,
        ce_overrides=overrides,
        container_name=container.name,
        image=container.image,
        command=container.command,
        args=container.args,
        env=container.env,
        working_dir=container.working_dir,
    )


def _sink_binding(common: Common, spec: dict[str, Any], problems: Problems) -> SinkBinding | None:
    sink, overrides = source_duck(spec, problems)
    subject = _subject(common.namespace, spec.get("subject"), problems)
    if sink is None or subject is None:
        return None
    return SinkBinding(**common.fields(), sink=sink, ce_overrides=overrides, subject=subject)


def _subject(namespace: str, value: Any, problems: Problems) -> Subject | None:
    path = "spec.subject"
    if value is None:
        problems.add(path, MISSING)
        return None
    before = len(problems)
    fields = obj(value, path, problems, known=("apiVersion", "kind", "namespace", "name", "selector"))
    if fields is None:
        return None
    api_version = string(fields.get("apiVersion"), join(path, "apiVersion"), problems, required=True)
    kind = string(fields.get("kind"), join(path, "kind"), problems, required=True)
    subject_ns = dns_label(fields.get("namespace"), join(path, "namespace"), problems)
    if subject_ns not in (None, namespace):
        problems.add(
            join(path, "namespace"),
            f"{quote(subject_ns or '')} must be empty or the SinkBinding's namespace {quote(namespace)}",
        )
    name = string(fields.get("name"), join(path, "name"), problems)
    raw_selector = fields.get("selector")
    if name is not None and raw_selector is not None:
        problems.add("spec.subject.name, spec.subject.selector", "expected exactly one, got both")
    elif name is None and raw_selector is None:
        problems.add(path, "expected exactly one of name, selector; got neither")
    selector = None if raw_selector is None else _selector(raw_selector, join(path, "selector"), problems)
    if len(problems) > before or api_version is None or kind is None:
        return None
    return Subject(api_version=api_version, kind=kind, namespace=subject_ns, name=name, selector=selector)


def _selector(value: Any, path: str, problems: Problems) -> dict[str, Any] | None:
    """A Kubernetes LabelSelector (``matchLabels``, ``matchExpressions``), kept as written."""
    fields = obj(value, path, problems, known=("matchLabels", "matchExpressions"))
    if fields is None:
        return None
    string_map(fields.get("matchLabels"), join(path, "matchLabels"), problems)
    expressions = fields.get("matchExpressions")
    at = join(path, "matchExpressions")
    if expressions is not None and not isinstance(expressions, list):
        problems.add(at, f"must be a list, got {describe(expressions)}")
    elif expressions is not None:
        for i, item in enumerate(expressions):
            rule = obj(item, join(at, i), problems, known=("key", "operator", "values"))
            if rule is None:
                continue
            string(rule.get("key"), join(join(at, i), "key"), problems, required=True)
            operator = rule.get("operator")
            if operator is None:
                problems.add(join(join(at, i), "operator"), MISSING)
            else:
                one_of(operator, join(join(at, i), "operator"), problems, _SELECTOR_OPERATORS)
            strings(rule.get("values"), join(join(at, i), "values"), problems)
    return fields


_PING_FIELDS = (*SOURCE_FIELDS, "schedule", "timezone", "contentType", "data", "dataBase64")
_PING = Kind(fields=_PING_FIELDS, build=_ping)

KINDS: dict[tuple[str, str], Kind] = {
    (SOURCES_V1, "PingSource"): _PING,
    (SOURCES_V1BETA2, "PingSource"): _PING,
    (SOURCES_V1, "ContainerSource"): Kind(fields=(*SOURCE_FIELDS, "template"), build=_container_source),
    (SOURCES_V1, "SinkBinding"): Kind(fields=(*SOURCE_FIELDS, "subject"), build=_sink_binding),
}
"""The kinds this module adds (merged by :func:`weir.manifests.kinds.all_kinds`)."""
