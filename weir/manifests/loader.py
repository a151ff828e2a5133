"""Loading a manifest set: files and directories in, resources and problems out.

Loading never raises for bad content: every problem, including unreadable files and YAML syntax
errors, becomes one line of :attr:`LoadResult.problems`::

    deploy/x.yaml:12: Trigger default/orders: spec.delivery.timeout: "5s" is not an ISO-8601 duration

that is ``file:line`` (the line of the field, or of the document), the document
(``Kind namespace/name``, or ``document #N`` when it has no usable name), the field path and the
reason. A ``kind namespace/name`` declared twice in the set is a problem naming both places.
"""

from __future__ import annotations

from collections.abc import Sequence

from weir.manifests.documents import YAMLProblem, manifest_files, parse, read_text
from weir.manifests.fields import Problems
from weir.manifests.kinds import read
from weir.manifests.model import LoadResult, Origin, Resource


class _Collector:
    """Resources and problems gathered over every file of one load."""

    def __init__(self) -> None:
        self.resources: list[Resource] = []
        self.problems: list[str] = []
        self._seen: dict[tuple[str, str, str], Resource] = {}
        self._strings: dict[str, str] = {}
        """Equal strings of every file share one object (see :func:`parse`); dropped with the load."""

    def add_text(self, text: str, file: str) -> None:
        try:
            for document in parse(text, self._strings):
                origin = Origin(file=file, index=document.index, line=document.line)
                problems = Problems()
                resource, label = read(document.data, origin, problems)
                for path, message in problems.items:
                    self.problems.append(f"{file}:{document.line_of(path)}: {label}: {message}")
                if resource is not None:
                    self._add(resource)
        except YAMLProblem as exc:
            where = file if exc.line is None else f"{file}:{exc.line}"
            self.problems.append(f"{where}: invalid YAML: {exc.reason}")

    def _add(self, resource: Resource) -> None:
        first = self._seen.get(resource.key)
        if first is not None:
            self.problems.append(
                f"{resource.origin.where}: {resource.label}: declared twice "
                f"(first at {first.origin.where}); names must be unique per kind and namespace"
            )
            return
        self._seen[resource.key] = resource
        self.resources.append(resource)

    def result(self) -> LoadResult:
        return LoadResult(resources=self.resources, problems=self.problems)


def load_text(text: str, *, file: str) -> LoadResult:
    """The resources declared in ``text`` (multi-document YAML); ``file`` names it in problems."""
    collector = _Collector()
    collector.add_text(text, file)
    return collector.result()


def load_paths(paths: Sequence[str]) -> LoadResult:
    """The resources declared in ``paths`` (files, or directories read recursively).

    A missing path, an unreadable file or a file that is not UTF-8 is a problem, not an error.
    """
    collector = _Collector()
    files, problems = manifest_files(paths)
    collector.problems.extend(problems)
    for file in files:
        try:
            text = read_text(file)
        except UnicodeDecodeError as exc:
            collector.problems.append(f"{file}: not UTF-8 text (byte {exc.start}: {exc.reason})")
            continue
        except OSError as exc:
            collector.problems.append(f"{file}: cannot read: {exc.strerror or exc}")
            continue
        collector.add_text(text, file)
    return collector.result()
