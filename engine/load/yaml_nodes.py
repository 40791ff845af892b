"""YAML → plain data plus the line:col of every key and value.

PyYAML's composer gives nodes with marks; we construct the Python values ourselves so that we
can (a) reject duplicate keys, which PyYAML silently overwrites, (b) remember where each path
came from, and (c) bound the work, so an alias bomb ("billion laughs") is an error, not a hang.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from engine.problems import Problem, ProblemsFound

Path = tuple[str | int, ...]

MAX_BYTES = 1_000_000
"""Playbooks are small; a file larger than this is refused before parsing."""
MAX_NODES = 100_000
"""Upper bound on constructed values, counting alias expansions."""


@dataclass
class Located:
    """Parsed data and where each path starts: keys at their key, list items at their value."""

    data: Any
    path: str
    marks: dict[Path, tuple[int, int]] = field(default_factory=dict)

    def where(self, loc: Path) -> tuple[int, int]:
        """Line and column of the longest prefix of `loc` that exists in the file."""
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.marks:
                return self.marks[loc[:end]]
        return (1, 1)


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.marks: dict[Path, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self._scalars = yaml.SafeLoader("")  # only for its scalar constructors

    def build(self, node: yaml.Node, at: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _TooBig
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, at)
        if isinstance(node, yaml.SequenceNode):
            out = []
            for i, item in enumerate(node.value):
                self._mark(at + (i,), item)
                out.append(self.build(item, at + (i,)))
            return out
        return self._scalars.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, at: Path) -> dict[Any, Any]:
        self._scalars.flatten_mapping(node)  # resolves YAML merge keys (<<)
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalars.construct_object(key_node, deep=True)
            if not isinstance(key, str | int | float | bool) or key is None:
                self._problem(key_node, "mapping keys must be plain words")
                continue
            key = str(key) if not isinstance(key, str) else key
            if key in out:
                line, _ = self.marks.get(at + (key,), (0, 0))
                self._problem(key_node, f"duplicate key '{key}' (first defined at line {line})")
                continue
            self._mark(at + (key,), key_node)
            out[key] = self.build(value_node, at + (key,))
        return out

    def _mark(self, at: Path, node: yaml.Node) -> None:
        self.marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)

    def _problem(self, node: yaml.Node, message: str) -> None:
        mark = node.start_mark
        self.problems.append(Problem(self.path, mark.line + 1, mark.column + 1, message))


class _TooBig(Exception):
    pass


def parse_yaml(raw: bytes | str, path: str) -> Located:
    """Parse one YAML document. Raises ProblemsFound with every problem at its line:col."""
    if len(raw) > MAX_BYTES:
        size = len(raw) / 1_000_000
        raise ProblemsFound([Problem(path, 1, 1, f"file is {size:.1f} MB; playbooks are limited to 1 MB")])
    text = _decode(raw, path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        raise ProblemsFound([Problem(path, line, col, f"YAML syntax: {reason}")]) from None
    except yaml.YAMLError as exc:  # e.g. more than one document
        raise ProblemsFound([Problem(path, 1, 1, f"YAML: {exc}")]) from None
    if root is None:
        raise ProblemsFound(
            [
                Problem(
                    path,
                    1,
                    1,
                    "file is empty; a playbook is a mapping with id, name, trigger and steps",
                )
            ]
        )
    builder = _Builder(path)
    try:
        data = builder.build(root, ())
    except _TooBig:
        raise ProblemsFound(
            [Problem(path, 1, 1, f"document expands to more than {MAX_NODES} values (alias bomb?)")]
        ) from None
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ProblemsFound([Problem(path, line, col, f"YAML: {exc.problem}")]) from None
    except (ValueError, OverflowError) as exc:  # e.g. an impossible date such as 2024-02-30
        mark = root.start_mark
        raise ProblemsFound([Problem(path, mark.line + 1, mark.column + 1, f"YAML value: {exc}")]) from None
    if builder.problems:
        raise ProblemsFound(builder.problems)
    return Located(data=data, path=path, marks=builder.marks)


def _decode(raw: bytes | str, path: str) -> str:
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ProblemsFound([Problem(path, line, col, "not UTF-8 text (is this a binary file?)")]) from None
