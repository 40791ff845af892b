"""YAML → plain data plus the line:col of every key and value.

PyYAML's composer gives nodes with marks; we construct the Python values ourselves so that we
can (a) reject duplicate keys, which PyYAML silently overwrites, (b) remember where each path
came from, and (c) bound the work, so an alias bomb ("billion laughs"), a self-referencing
anchor or absurd nesting is an error on one line, never a hang or a traceback.
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
MAX_DEPTH = 100
"""Deepest nesting accepted; real playbooks stay under 15."""


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


class _Stop(Exception):
    """Abandon construction with one problem (too big, too deep, self-referencing)."""

    def __init__(self, node: yaml.Node, message: str) -> None:
        self.node = node
        self.message = message


class _Builder:
    def __init__(self, path: str) -> None:
        self.path = path
        self.marks: dict[Path, tuple[int, int]] = {}
        self.problems: list[Problem] = []
        self.count = 0
        self._open: set[int] = set()  # nodes being built: an alias back to one of them is a cycle
        self._scalars = yaml.SafeLoader("")  # only for its scalar constructors

    def build(self, node: yaml.Node, at: Path) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Stop(node, f"document expands to more than {MAX_NODES:,} values (alias bomb?)")
        if len(at) > MAX_DEPTH:
            raise _Stop(node, f"nested more than {MAX_DEPTH} levels deep")
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if id(node) in self._open:
            raise _Stop(node, "an alias refers to the anchor that contains it (a cycle)")
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, at)
            out = []
            for i, item in enumerate(node.value):
                self._mark((*at, i), item)
                out.append(self.build(item, (*at, i)))
            return out
        finally:
            self._open.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            raise _Stop(node, f"YAML: {exc.problem}") from None
        except (ValueError, OverflowError) as exc:  # e.g. the impossible date 2026-02-30
            raise _Stop(node, f"'{node.value}' is not a valid {_tag_name(node.tag)}: {exc}") from None

    def _mapping(self, node: yaml.MappingNode, at: Path) -> dict[Any, Any]:
        try:
            self._scalars.flatten_mapping(node)  # resolves YAML merge keys (<<)
        except yaml.constructor.ConstructorError as exc:
            raise _Stop(node, f"YAML merge: {exc.problem}") from None
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._problem(key_node, "mapping keys must be plain words, not lists or mappings")
                continue
            key = self._scalar(key_node)
            if key is None:
                self._problem(key_node, "a key is empty (null)")
                continue
            key = key if isinstance(key, str) else str(key)
            if key in out:
                line, _ = self.marks.get((*at, key), (0, 0))
                self._problem(key_node, f"duplicate key '{key}' (first defined at line {line})")
                continue
            self._mark((*at, key), key_node)
            out[key] = self.build(value_node, (*at, key))
        return out

    def _mark(self, at: Path, node: yaml.Node) -> None:
        self.marks[at] = (node.start_mark.line + 1, node.start_mark.column + 1)

    def _problem(self, node: yaml.Node, message: str) -> None:
        mark = node.start_mark
        self.problems.append(Problem(self.path, mark.line + 1, mark.column + 1, message))


def _tag_name(tag: str) -> str:
    name = tag.rsplit(":", 1)[-1] if tag.startswith("tag:yaml.org,2002:") else tag
    return {"timestamp": "date", "int": "number", "float": "number"}.get(name, name)


# PyYAML's wording → what an author needs to hear.
_SYNTAX_HINTS = {
    "mapping values are not allowed here": "check the indentation of this line, or quote a value that contains ': '",
    "found character '\\t' that cannot start any token": "tab character: indent with spaces",
    "but found another document": "a playbook file holds a single document; remove the second '---'",
}


def parse_yaml(raw: bytes | str, path: str) -> Located:
    """Parse one YAML document. Raises ProblemsFound with every problem at its line:col."""
    located, problems = parse_yaml_keeping_data(raw, path)
    if problems or located is None:
        raise ProblemsFound(problems)
    return located


def parse_yaml_keeping_data(raw: bytes | str, path: str) -> tuple[Located | None, list[Problem]]:
    """Parse one YAML document; the data as far as it can be built, and every problem found.

    A duplicate or empty key costs only that key: the rest of the document is still returned, so
    `validate` can check it in the same run. Syntax errors, alias bombs and cycles leave no data
    (None). Raises ProblemsFound only for what stops parsing before any data exists.
    """
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
        reason = _SYNTAX_HINTS.get(reason, reason)
        raise ProblemsFound([Problem(path, line, col, f"YAML syntax: {reason}")]) from None
    except yaml.reader.ReaderError as exc:
        line, col = _line_col(text, exc.position)
        what = f"#x{exc.character:04x}" if isinstance(exc.character, int) else repr(exc.character)
        raise ProblemsFound([Problem(path, line, col, f"control character {what} is not allowed in YAML")]) from None
    except RecursionError:
        raise ProblemsFound([Problem(path, 1, 1, f"nested more than {MAX_DEPTH} levels deep")]) from None
    except yaml.YAMLError as exc:
        raise ProblemsFound([Problem(path, 1, 1, f"YAML: {str(exc).splitlines()[0]}")]) from None
    if root is None:
        raise ProblemsFound(
            [Problem(path, 1, 1, "file is empty; a playbook is a mapping with id, name, trigger and steps")]
        )
    builder = _Builder(path)
    try:
        data = builder.build(root, ())
    except _Stop as stop:
        builder.problems.append(
            Problem(path, stop.node.start_mark.line + 1, stop.node.start_mark.column + 1, stop.message)
        )
        return None, builder.problems
    except RecursionError:
        builder.problems.append(Problem(path, 1, 1, f"nested more than {MAX_DEPTH} levels deep"))
        return None, builder.problems
    builder.marks[()] = (root.start_mark.line + 1, root.start_mark.column + 1)
    return Located(data=data, path=path, marks=builder.marks), builder.problems


def _line_col(text: str, position: int) -> tuple[int, int]:
    line = text.count("\n", 0, position) + 1
    return line, position - (text.rfind("\n", 0, position) + 1) + 1


def _decode(raw: bytes | str, path: str) -> str:
    if isinstance(raw, str):
        return raw
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ProblemsFound([Problem(path, 1, 1, "file is UTF-16 text; save it as UTF-8")])
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ProblemsFound([Problem(path, line, col, "not UTF-8 text (is this a binary file?)")]) from None
