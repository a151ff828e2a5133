"""Which Weir is measured: the working tree, or a commit exported with ``git archive``.

Exporting a commit (``--weir-ref HEAD``) measures a fixed version while the working tree changes
under other work; it only reads the repository (no checkout, no index or ref changes).
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from bench.suite.procs import ROOT

PACKAGES = ("broker", "triggers", "weir", "sources", "channels")


def _git(*args: str) -> str:
    cmd = ["git", "--no-optional-locks", "-C", str(ROOT), *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()


def describe_tree() -> dict[str, Any]:
    """The working tree's commit and how many of Weir's files differ from it."""
    try:
        head = _git("rev-parse", "HEAD")
        changed = _git("status", "--porcelain", "--", *PACKAGES).splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"weir": "working tree (not a git checkout)"}
    return {"weir": "working tree", "commit": head, "uncommitted_files": len(changed)}


def export(ref: str, into: Path) -> dict[str, Any]:
    """Write Weir's packages at ``ref`` into ``into``; returns what was exported."""
    commit = _git("rev-parse", "--verify", f"{ref}^{{commit}}")
    existing = [p for p in PACKAGES if _git("ls-tree", "--name-only", commit, p)]
    cmd = ["git", "--no-optional-locks", "-C", str(ROOT), "archive", "--format=tar", commit, *existing]
    archive = subprocess.run(cmd, capture_output=True, check=True)
    into.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return {"weir": f"git archive {ref}", "commit": commit, "source": str(into)}
