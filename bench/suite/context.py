"""The state one suite run shares between its scenarios: configuration, the sink, scratch space."""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.suite.config import Profile, SuiteConfig
from bench.suite.logserver import LogServer


@dataclass(slots=True)
class Ctx:
    config: SuiteConfig
    work: Path
    """Scratch space (data directories, manifests); the caller removes it."""
    sink: str
    """Base URL of the recording sink, e.g. ``http://127.0.0.1:PORT``."""
    session: aiohttp.ClientSession
    """For control requests (sink statistics, admin API), never for load."""
    weir_src: Path | None = None
    """Run Weir from this exported source tree instead of the installed (working) tree."""
    log_server: LogServer | None = None
    """The run's NATS or Kafka server (shared backends only)."""
    shared: dict[str, Any] = field(default_factory=dict)
    """Figures one scenario hands to a later one (e.g. ``S1.max`` for the S2 soak rate)."""
    _names: itertools.count[int] = field(default_factory=itertools.count)

    @property
    def profile(self) -> Profile:
        return self.config.profile

    @property
    def logs(self) -> Path:
        return self.config.out_dir / f"logs{self.config.tag}"

    def scratch(self, name: str) -> Path:
        """A new, empty directory for ``name``."""
        path = self.work / f"{next(self._names):03d}-{name}"
        path.mkdir(parents=True)
        return path

    def run_name(self, label: str) -> str:
        """A unique run name (the ``ce-id`` prefix) for ``label``."""
        return f"{re.sub(r'[^A-Za-z0-9_]', '_', label)}_{next(self._names)}"

    def fresh_prefix(self) -> str:
        """A stream/topic name prefix no earlier start of this run used (shared backends)."""
        return f"bench{next(self._names):03d}"

    def store_url(self, prefix: str | None = None) -> str:
        """The store URL of a Weir start on the run's log server, under ``prefix`` (default: a
        fresh one, so every start sees an empty store)."""
        if self.log_server is None:
            raise RuntimeError(f"backend {self.config.backend} has no log server")
        return f"{self.log_server.store_base}?prefix={prefix or self.fresh_prefix()}"

    def results_files(self) -> list[Path]:
        """Results files of this backend and kind (quick or full) in the output folder, newest first."""
        name = re.compile(rf"^\d{{4}}-\d{{2}}-\d{{2}}{re.escape(self.config.results_suffix)}\.json$")
        return sorted((p for p in self.config.out_dir.glob("*.json") if name.match(p.name)), reverse=True)

    def records_of(self, scenario: str) -> list[dict[str, Any]]:
        """Records of ``scenario`` from this run, else from the newest results file of this backend."""
        if f"{scenario}.all" in self.shared:
            found: list[dict[str, Any]] = self.shared[f"{scenario}.all"]
            return found
        for path in self.results_files():
            doc = json.loads(path.read_text())
            if doc.get("backend") == self.config.backend:
                return [r for r in doc.get("records", []) if r["scenario"] == scenario]
        return []

    async def get_json(self, url: str) -> Any:
        async with self.session.get(url) as response:
            response.raise_for_status()
            return await response.json()
