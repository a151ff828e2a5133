"""Plain-text tables for ``weir get`` and ``weir deadletters`` (the shape ``kn`` prints)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _ready(obj: dict[str, Any]) -> tuple[str, str]:
    for condition in obj.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready":
            return condition.get("status", "Unknown"), condition.get("reason", "")
    return "Unknown", ""


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by three spaces; no trailing blanks."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    lines = [
        "   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join(lines)


def resource_table(resource: str, items: Sequence[dict[str, Any]]) -> str:
    rows: list[list[str]] = []
    for obj in items:
        meta, spec, status = obj["metadata"], obj.get("spec", {}), obj.get("status", {})
        ready, reason = _ready(obj)
        if resource == "sources":
            rows.append(
                [meta["namespace"], meta["name"], obj["kind"], status.get("sinkUri", ""), ready, reason]
            )
        elif resource == "triggers":
            rows.append(
                [
                    meta["namespace"],
                    meta["name"],
                    spec.get("broker", ""),
                    status.get("subscriberUri", ""),
                    ready,
                    reason,
                ]
            )
        else:
            rows.append(
                [meta["namespace"], meta["name"], status.get("address", {}).get("url") or "", ready, reason]
            )
    if resource == "sources":
        header = ["NAMESPACE", "NAME", "KIND", "SINK", "READY", "REASON"]
    elif resource == "triggers":
        header = ["NAMESPACE", "NAME", "BROKER", "SUBSCRIBER_URI", "READY", "REASON"]
    else:
        header = ["NAMESPACE", "NAME", "URL", "READY", "REASON"]
    if not rows:
        return f"No {resource} found."
    return format_table(header, rows)


def deadletter_table(items: Sequence[dict[str, Any]]) -> str:
    if not items:
        return "No dead letters."
    rows = [
        [
            item["deadAt"],
            item["trigger"],
            item["event"].get("id", ""),
            item["event"].get("type", ""),
            str(item["attempts"]),
            str(item["status"] if item["status"] is not None else "-"),
            item["reason"],
        ]
        for item in items
    ]
    return format_table(["DEAD_AT", "TRIGGER", "ID", "TYPE", "ATTEMPTS", "STATUS", "REASON"], rows)
