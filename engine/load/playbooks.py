"""Load one playbook file: YAML with marks → `Playbook` spec, or every problem found."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from engine.load.parts import playbook_parts
from engine.load.pydantic_errors import problems_from_validation
from engine.load.yaml_nodes import Located, parse_yaml_keeping_data
from engine.problems import Problem, ProblemsFound
from engine.spec import Playbook


@dataclass(frozen=True)
class LoadedPlaybook:
    """A playbook as written, where it came from, and its version (a content hash)."""

    spec: Playbook
    located: Located
    source: str
    """The file's text as read: stored with each version, so an old version reloads exactly."""

    @property
    def path(self) -> str:
        return self.located.path

    @property
    def version(self) -> str:
        """Hash of the canonical spec: comments and formatting do not change the version."""
        canonical = self.spec.model_dump_json(by_alias=True, exclude_defaults=False)
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LoadAttempt:
    """One playbook file as far as it loads, with every problem found on the way."""

    problems: list[Problem]
    playbook: LoadedPlaybook | None
    """The whole playbook when there are no problems; with problems, the parts that validated
    (see `engine/load/parts.py`) for the checks that can still run, or None."""
    valid_keys: frozenset[str] | None = None
    """With problems: the top-level keys whose values validated; None when all did."""
    dropped_step_ids: frozenset[str] = frozenset()
    """The ids of steps left out because they did not validate."""


def attempt_playbook_text(raw: bytes | str, path: str) -> LoadAttempt:
    """Parse and validate playbook text, reporting every problem instead of stopping at the first
    kind: YAML-level problems that leave data (duplicate keys) and model errors come together."""
    try:
        located, problems = parse_yaml_keeping_data(raw, path)
    except ProblemsFound as exc:
        return LoadAttempt(exc.problems, None)
    if located is None:
        return LoadAttempt(problems, None)
    source = raw if isinstance(raw, str) else raw.decode("utf-8-sig")
    if not isinstance(located.data, dict):
        kind = type(located.data).__name__
        kind = {"list": "a list", "str": "a string", "int": "a number"}.get(kind, kind)
        message = f"a playbook is a mapping (id: ..., name: ..., trigger: ..., steps: ...), not {kind}"
        return LoadAttempt([*problems, Problem(path, 1, 1, message)], None)
    try:
        spec = Playbook.model_validate(located.data)
    except ValidationError as exc:
        problems = sorted({*problems, *problems_from_validation(exc, located, Playbook)})
        parts = playbook_parts(located)
        if parts is None:
            return LoadAttempt(problems, None)
        partial = LoadedPlaybook(spec=parts.spec, located=parts.located, source=source)
        return LoadAttempt(problems, partial, parts.valid, parts.dropped_step_ids)
    return LoadAttempt(problems, LoadedPlaybook(spec=spec, located=located, source=source))


def load_playbook_text(raw: bytes | str, path: str) -> LoadedPlaybook:
    """Parse and validate playbook text. Raises ProblemsFound listing every problem."""
    attempt = attempt_playbook_text(raw, path)
    if attempt.problems or attempt.playbook is None:
        raise ProblemsFound(attempt.problems)
    return attempt.playbook


def attempt_playbook(path: Path, display: str | None = None) -> LoadAttempt:
    """Read and load the playbook file at `path` as far as it loads; `display` names it in problems."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return LoadAttempt([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")], None)
    return attempt_playbook_text(raw, shown)


def load_playbook(path: Path, display: str | None = None) -> LoadedPlaybook:
    """Read and load the playbook file at `path`; `display` is the name used in problems."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return load_playbook_text(raw, shown)
