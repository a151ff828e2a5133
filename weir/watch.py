"""Hot reload: re-apply the manifests whenever a watched file is added, edited or removed.

Each change reloads every path given to ``weir run`` and applies the result as a whole, so removing
a file removes its resources and an edit with problems is rejected (logged with file, document,
field and reason) while the running state stays. Accepted events are never affected: they are in
the store, and a Trigger that stays declared keeps its pending deliveries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from watchfiles import awatch

from weir.controlplane import ControlPlane
from weir.manifests import load_paths

log = logging.getLogger("weir.watch")

_SUFFIXES = (".yaml", ".yml")


def _watch_roots(paths: Sequence[str]) -> tuple[list[Path], list[Path], set[Path]]:
    """Directories to watch, directories named on the command line, and files named on it.

    A file is watched through its directory because editors often replace a file (write + rename),
    which a watch on the file itself would lose.
    """
    roots: list[Path] = []
    dirs: list[Path] = []
    files: set[Path] = set()
    for raw in paths:
        path = Path(raw).resolve()
        if path.is_dir():
            roots.append(path)
            dirs.append(path)
        else:
            files.add(path)
            roots.append(path.parent)
    return sorted(set(roots)), dirs, files


def _relevant(changed: Path, dirs: Sequence[Path], files: set[Path]) -> bool:
    if changed in files:
        return True
    return changed.suffix in _SUFFIXES and any(changed.is_relative_to(d) for d in dirs)


async def watch_manifests(paths: Sequence[str], control: ControlPlane, stop: asyncio.Event) -> None:
    """Apply manifest changes until ``stop`` is set."""
    roots, dirs, files = _watch_roots(paths)
    async for changes in awatch(*roots, stop_event=stop, debounce=200, step=50, recursive=True):
        if not any(_relevant(Path(p), dirs, files) for _, p in changes):
            continue
        result = load_paths(list(paths))
        try:
            problems = await control.apply(result)
        except Exception:
            # Keep watching: the next change may apply, and the running state is the last one
            # applied whole.
            log.exception("applying a manifest change failed")
            continue
        if problems:
            for problem in problems:
                log.error("manifest change rejected: %s", problem)
        else:
            log.info("manifests reloaded: %d resources", len(result.resources))
