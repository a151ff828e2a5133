"""py-spy profiles of the system under test, summarised as the event loop's top frames.

``py-spy record --format raw`` writes collapsed stacks (one line per distinct stack and its sample
count, each prefixed with its thread). Idle samples (a thread blocked in ``epoll`` or a lock) are
not recorded, so shares are of the time the thread was busy. *Inclusive* share: samples whose
stack contains the frame; *self* share: samples whose innermost frame it is. The loop's scaffolding
(``<module>``, the CLI, ``asyncio.Runner``) says nothing and is left out, except that samples whose
innermost Python frame is the runner itself are time in the loop's native code (uvloop, sockets,
system calls) and are reported as such. A coroutine resumed by the loop is sampled from its own
frame down, so inclusive shares of a coroutine do not include its callers' share.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.suite.procs import LOAD_CPU, pinned

SCAFFOLD = re.compile(
    r"^(<module>|main \(weir/cli\.py|_cmd_run |run \(uvloop/|Runner\.run |run \(asyncio/runners"
    r"|_run_code \(<frozen runpy>|_run_module_as_main \(<frozen runpy>)"
)
NATIVE = re.compile(r"^(Runner\.run |run \(uvloop/)")
_FILE = re.compile(r"\(([^:()]+):\d+\)$")
_LINE = re.compile(r"^thread \((?P<tid>[^)]*)\): (?P<thread>[^;]*);(?P<stack>.*) (?P<count>\d+)$")


def py_spy() -> str | None:
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


def component(frame: str) -> str | None:
    """The package a frame's file belongs to (``broker/store``, ``aiohttp``, ``asyncio``, ...)."""
    match = _FILE.search(frame)
    if match is None:
        return None
    parts = match[1].split("/")
    if parts[0] in ("broker", "triggers", "weir") and len(parts) > 2:
        return "/".join(parts[:2])
    return parts[0].removesuffix(".py")


def summarise(raw: str, top: int = 15) -> dict[str, Any]:
    inclusive: dict[str, int] = {}
    components: dict[str, int] = {}
    leaf: dict[str, int] = {}
    threads: dict[str, int] = {}
    main = 0
    for line in raw.splitlines():
        match = _LINE.match(line.strip())
        if match is None:
            continue
        count = int(match["count"])
        thread = match["thread"]
        threads[thread] = threads.get(thread, 0) + count
        if thread != "MainThread":
            continue
        main += count
        frames = match["stack"].split(";")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
        for name in {component(f) for f in frames if not SCAFFOLD.match(f)} - {None}:
            assert name is not None
            components[name] = components.get(name, 0) + count
        leaf[frames[-1]] = leaf.get(frames[-1], 0) + count
    if not main:
        return {"samples": 0, "threads": threads, "inclusive": [], "self": []}
    ranked = sorted(inclusive.items(), key=lambda kv: -kv[1])
    useful = [(f, n / main) for f, n in ranked if not SCAFFOLD.match(f)]
    native = sum(n for f, n in leaf.items() if NATIVE.match(f))
    leaves = [(f, n / main) for f, n in sorted(leaf.items(), key=lambda kv: -kv[1]) if not NATIVE.match(f)]
    return {
        "samples": main,
        "threads": threads,
        "native_loop": round(native / main, 4),
        "components": {k: round(n / main, 4) for k, n in sorted(components.items(), key=lambda kv: -kv[1])},
        "inclusive": [[f, round(s, 4)] for f, s in useful[:top]],
        "self": [[f, round(s, 4)] for f, s in leaves[:top]],
    }


async def record(pid: int, seconds: float, out: Path) -> dict[str, Any]:
    """Sample ``pid`` for ``seconds`` at 100 Hz (py-spy pinned to the load core) and summarise."""
    exe = py_spy()
    if exe is None:
        return {"error": "py-spy is not installed"}
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))), "--rate", "100"]
    cmd += ["--format", "raw", "--output", str(out), "--threads", "--nonblocking"]
    proc = await asyncio.create_subprocess_exec(
        *pinned(LOAD_CPU, cmd), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output, _ = await proc.communicate()
    raw = _read(out)
    if proc.returncode != 0 or raw is None:
        return {"error": f"py-spy exited {proc.returncode}: {output.decode(errors='replace')[-500:]}"}
    summary = summarise(raw)
    summary["file"] = str(out)
    return summary


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def render(summary: dict[str, Any], title: str) -> str:
    """A Markdown block with the top inclusive and self frames."""
    if "error" in summary:
        return f"Profile ({title}): {summary['error']}"
    threads = ", ".join(f"{t} {n}" for t, n in sorted(summary["threads"].items(), key=lambda kv: -kv[1]))
    lines = [
        f"Profile ({title}): py-spy, 100 Hz, {summary['samples']} busy samples of the event loop "
        f"thread (busy samples per thread: {threads}); {summary.get('native_loop', 0):.0%} of the loop "
        "thread's samples are in the loop's native code (uvloop, sockets, system calls).",
        "",
        "Share of the loop thread's samples with code of each package on the stack: "
        + ", ".join(f"{k} {v:.0%}" for k, v in list(summary.get("components", {}).items())[:12])
        + ".",
        "",
        "| event-loop frame | inclusive | self |",
        "|---|---|---|",
    ]
    selfs = dict((f, s) for f, s in summary["self"])
    for frame, share in summary["inclusive"]:
        lines.append(f"| `{frame}` | {share:.0%} | {selfs.get(frame, 0.0):.0%} |")
    hot_leaves = [(f, s) for f, s in summary["self"] if f not in dict(summary["inclusive"])][:5]
    if hot_leaves:
        lines.append("")
        lines.append("Hottest leaf frames: " + "; ".join(f"`{f}` {s:.0%}" for f, s in hot_leaves) + ".")
    return "\n".join(lines)
