"""The ``weir`` command line.

::

    weir run -f PATH [-f PATH ...] [--host H] [--port P] [--store URL] [--data-dir DIR]
             [--resolve NS/NAME=URL ...] [--grace SECONDS] [--no-watch]
    weir validate -f PATH [-f PATH ...]
    weir get brokers|triggers|sinks|sources [-n NAMESPACE | -A] [-o table|json] [--server URL]
    weir deadletters BROKER [-n NAMESPACE] [-o table|json] [--server URL]
    weir filter test -f TRIGGERS.yaml [--event EVENT.json]    (the event is read from stdin without --event)

Exit codes: 0 success, 1 problems found or request failed, 2 bad usage or manifests that prevent a start.
The environment variable ``WEIR_SERVER`` sets the default ``--server`` (``http://127.0.0.1:8080``).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from broker.bindings.json_format import from_dict
from broker.errors import InvalidEvent
from weir.filtertest import explain
from weir.manifests import Trigger, load_paths
from weir.server import RunConfig, run
from weir.tables import deadletter_table, resource_table


def _resolve_pair(text: str) -> tuple[tuple[str, str], str]:
    key, sep, url = text.partition("=")
    namespace, slash, name = key.partition("/")
    if not sep or not slash or not namespace or not name or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"--resolve wants NAMESPACE/NAME=http(s)://URL, got {text!r}")
    return (namespace, name), url


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="weir", description="Knative Eventing compatible event mesh.")
    sub = parser.add_subparsers(dest="command", required=True)

    run_p = sub.add_parser("run", help="serve Brokers and Triggers from manifests")
    run_p.add_argument("-f", "--filename", dest="paths", action="append", required=True, metavar="PATH")
    run_p.add_argument("--host", default="127.0.0.1")
    run_p.add_argument("--port", type=int, default=8080)
    run_p.add_argument(
        "--store", default="",
        help="sqlite:///path.db (default: DATA_DIR/weir.db), memory://, nats://HOST:PORT or kafka://HOST:PORT",
    )
    run_p.add_argument(
        "--role", choices=["all", "ingress", "dispatcher"], default="all",
        help="ingress: accept events only; dispatcher: route and deliver only (both need a shared store)",
    )
    run_p.add_argument("--data-dir", default=".weir")
    run_p.add_argument("--resolve", action="append", type=_resolve_pair, default=[], metavar="NS/NAME=URL")
    run_p.add_argument("--max-event-bytes", type=int, default=1 << 20)
    run_p.add_argument("--store-max-events", type=int, default=None)
    run_p.add_argument("--store-max-bytes", type=int, default=None)
    run_p.add_argument("--max-event-age", type=float, default=None, metavar="SECONDS")
    run_p.add_argument("--delivery-timeout", type=float, default=30.0, metavar="SECONDS")
    run_p.add_argument("--grace", type=float, default=10.0, metavar="SECONDS")
    run_p.add_argument("--no-watch", dest="watch", action="store_false")
    run_p.add_argument(
        "--secrets-dir", default=".weir/secrets", help="secretKeyRef files: DIR/NAMESPACE/NAME/KEY"
    )
    run_p.add_argument("--log-level", default="info")

    val_p = sub.add_parser("validate", help="check manifests and list every problem")
    val_p.add_argument("-f", "--filename", dest="paths", action="append", required=True, metavar="PATH")

    server = os.environ.get("WEIR_SERVER", "http://127.0.0.1:8080")
    get_p = sub.add_parser("get", help="list resources with their status")
    get_p.add_argument("resource", choices=["brokers", "triggers", "sinks", "sources"])
    get_p.add_argument("-n", "--namespace", default="default")
    get_p.add_argument("-A", "--all-namespaces", action="store_true")
    get_p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    get_p.add_argument("--server", default=server)

    dl_p = sub.add_parser("deadletters", help="list a Broker's dead-letter record")
    dl_p.add_argument("broker")
    dl_p.add_argument("-n", "--namespace", default="default")
    dl_p.add_argument("-o", "--output", choices=["table", "json"], default="table")
    dl_p.add_argument("--server", default=server)

    filter_p = sub.add_parser("filter", help="try Trigger filters on an event")
    filter_sub = filter_p.add_subparsers(dest="filter_command", required=True)
    test_p = filter_sub.add_parser("test", help="say whether an event passes each Trigger's filter, and why")
    test_p.add_argument("-f", "--filename", dest="paths", action="append", required=True, metavar="PATH")
    test_p.add_argument("--event", default="-", help="structured-mode CloudEvent JSON file, or - for stdin")
    return parser


async def _fetch(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, orjson.loads(await response.read())


def _get(server: str, path: str) -> Any:
    url = server.rstrip("/") + path
    try:
        status, body = asyncio.run(_fetch(url))
    except (aiohttp.ClientError, OSError) as exc:
        raise SystemExit(f"weir: cannot reach {url}: {exc}") from None
    if status != 200:
        raise SystemExit(f"weir: {url}: {body.get('message', status) if isinstance(body, dict) else status}")
    return body


def _cmd_get(args: argparse.Namespace) -> int:
    if args.resource == "sinks":
        path = f"/apis/sinks.knative.dev/v1alpha1/namespaces/{args.namespace}/integrationsinks"
    elif args.resource == "sources":
        path = "/apis/weir.dev/v1/sources" + ("" if args.all_namespaces else f"?namespace={args.namespace}")
    elif args.all_namespaces:
        path = f"/apis/eventing.knative.dev/v1/{args.resource}"
    else:
        path = f"/apis/eventing.knative.dev/v1/namespaces/{args.namespace}/{args.resource}"
    body = _get(args.server, path)
    if args.output == "json":
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        print(resource_table(args.resource, body["items"]))
    return 0


def _cmd_deadletters(args: argparse.Namespace) -> int:
    path = f"/apis/eventing.knative.dev/v1/namespaces/{args.namespace}/brokers/{args.broker}/deadletters"
    body = _get(args.server, path)
    if args.output == "json":
        print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    else:
        print(deadletter_table(body["items"]))
    return 0


def _cmd_filter(args: argparse.Namespace) -> int:
    result = load_paths(args.paths)
    for problem in result.problems:
        print(problem, file=sys.stderr)
    if result.problems:
        return 1
    triggers = [r for r in result.resources if isinstance(r, Trigger)]
    if not triggers:
        print(f"weir: no Trigger in {', '.join(args.paths)}", file=sys.stderr)
        return 1
    source = "stdin" if args.event == "-" else args.event
    try:
        raw = sys.stdin.buffer.read() if args.event == "-" else Path(args.event).read_bytes()
        parsed = orjson.loads(raw)
        items = parsed if isinstance(parsed, list) else [parsed]
        events = [
            from_dict(item, where=f"{source}[{i}]" if len(items) > 1 else source)
            for i, item in enumerate(items)
        ]
    except (OSError, orjson.JSONDecodeError, InvalidEvent) as exc:
        print(f"weir: cannot read the event from {source}: {exc}", file=sys.stderr)
        return 1
    for event in events:
        if len(events) > 1:
            print(f"Event {event.source} {event.id}:")
        for trigger in triggers:
            print(explain(trigger, event).render())
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    result = load_paths(args.paths)
    for problem in result.problems:
        print(problem)
    if result.problems:
        print(f"{len(result.problems)} problem(s) found", file=sys.stderr)
        return 1
    print(f"{len(result.resources)} resource(s) valid")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    config = RunConfig(
        paths=tuple(args.paths),
        host=args.host,
        port=args.port,
        store=args.store,
        role=args.role,
        data_dir=args.data_dir,
        resolve=dict(args.resolve),
        max_event_bytes=args.max_event_bytes,
        store_max_events=args.store_max_events,
        store_max_bytes=args.store_max_bytes,
        max_event_age=args.max_event_age,
        delivery_timeout=args.delivery_timeout,
        grace=args.grace,
        watch=args.watch,
        secrets_dir=args.secrets_dir,
    )
    try:
        import uvloop
    except ImportError:  # uvloop is optional (no wheels on some platforms)
        return asyncio.run(run(config))
    return int(uvloop.run(run(config)))


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "run": _cmd_run,
        "validate": _cmd_validate,
        "get": _cmd_get,
        "deadletters": _cmd_deadletters,
        "filter": _cmd_filter,
    }
    return handlers[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
