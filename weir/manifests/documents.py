"""Manifest files into YAML documents, each with its position and the line of every field.

Paths may be files (read whatever their name) or directories (every ``*.yaml`` / ``*.yml`` below
them, in sorted path order). Names starting with ``.`` are skipped in directories: editors keep
swap files there, and Kubernetes ConfigMap volumes hold a ``..data`` copy of every file, which
would otherwise be read twice. A file named twice (directly and through a directory) is read once.

YAML is parsed with PyYAML's safe loader (no Python objects), one document per ``---``. Empty
documents are skipped but still counted, so ``document #N`` matches what an editor shows.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from weir.manifests.fields import join

MANIFEST_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """One non-empty YAML document: its data, its ``index`` in the file (from 1), its first line,
    and the line (from 1) of each field path (``spec.delivery.retry``; see
    :func:`weir.manifests.fields.join`)."""

    data: Any
    index: int
    line: int
    lines: dict[str, int]

    def line_of(self, path: str) -> int:
        """The line of ``path``, or of its nearest ancestor present in the document."""
        path = path.split(",", 1)[0].strip()
        while path:
            found = self.lines.get(path)
            if found is not None:
                return found
            path = _parent(path)
        return self.line


def _parent(path: str) -> str:
    if path.endswith("]"):
        return path[: path.rindex("[")]
    dot = path.rfind(".")
    return path[:dot] if dot >= 0 else ""


class YAMLProblem(Exception):
    """The text is not valid YAML; ``line`` (from 1) is where the parser stopped, when known."""

    def __init__(self, reason: str, line: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line


class _Loader(yaml.SafeLoader):
    """SafeLoader that returns one object for equal strings: 10,000 Triggers repeat the same keys,
    kinds, namespaces and Broker names, and the loaded manifests live as long as the process.

    The table belongs to one load (``strings``, shared by its files) and is freed with it. The
    interpreter's intern table (``sys.intern``) would keep its largest size for the life of the
    process, about 190 bytes per Trigger (and on some Python versions the strings themselves).
    """

    def __init__(self, text: str, strings: dict[str, str]) -> None:
        super().__init__(text)
        self.strings = strings


def _shared_str(loader: _Loader, node: yaml.Node) -> str:
    value = loader.construct_scalar(node)  # type: ignore[arg-type]
    return loader.strings.setdefault(value, value) if isinstance(value, str) else value


_Loader.add_constructor("tag:yaml.org,2002:str", _shared_str)


def parse(text: str, strings: dict[str, str] | None = None) -> Iterator[Document]:
    """The non-empty documents of ``text``. Raises :class:`YAMLProblem` at the first syntax error
    (documents before it have been yielded).

    Equal strings come back as one object, within ``text`` and across every call given the same
    ``strings`` table (pass one per load; the default is a table for this text only).
    """
    loader = _Loader(text, {} if strings is None else strings)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:  # check_node() promised a document; stay total anyway
                break
            index += 1
            data = loader.construct_document(node)
            if data is None:
                continue
            yield Document(data=data, index=index, line=node.start_mark.line + 1, lines=_lines(node))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = ", ".join(part for part in (exc.context, exc.problem) if part)
        raise YAMLProblem(reason or "invalid YAML", None if mark is None else mark.line + 1) from None
    except yaml.YAMLError as exc:
        raise YAMLProblem(" ".join(str(exc).split()), None) from None
    except RecursionError:
        raise YAMLProblem("nested too deeply", None) from None
    finally:
        loader.dispose()


def _lines(root: yaml.Node) -> dict[str, int]:
    """Field path -> line, walking each node once (aliases repeat nodes; they may even loop)."""
    lines: dict[str, int] = {}
    seen: set[int] = set()
    stack: list[tuple[str, yaml.Node]] = [("", root)]
    while stack:
        path, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    child = join(path, str(key.value))
                    lines.setdefault(child, key.start_mark.line + 1)
                    stack.append((child, value))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = join(path, i)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((child, item))
    return lines


def manifest_files(paths: Sequence[str]) -> tuple[list[str], list[str]]:
    """The files to read for ``paths`` (in order, each once) and the problems finding them."""
    files: list[str] = []
    problems: list[str] = []
    seen: set[str] = set()

    def add(path: str) -> None:
        real = os.path.realpath(path)
        if real not in seen:
            seen.add(real)
            files.append(path)

    for path in paths:
        if os.path.isdir(path):
            found: list[str] = []

            def failed(exc: OSError) -> None:
                problems.append(f"{exc.filename}: cannot read directory: {exc.strerror}")

            for dirpath, dirnames, filenames in os.walk(path, onerror=failed):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                found.extend(
                    os.path.join(dirpath, name)
                    for name in filenames
                    if name.endswith(MANIFEST_SUFFIXES) and not name.startswith(".")
                )
            for file in sorted(found):
                add(file)
        elif os.path.exists(path):
            add(path)
        else:
            problems.append(f"{path}: no such file or directory")
    return files, problems


def read_text(path: str) -> str:
    """The file's text (UTF-8, an optional byte-order mark dropped). Raises OSError or
    UnicodeDecodeError."""
    with open(path, encoding="utf-8-sig") as f:
        return f.read()
