"""Load one playbook file: YAML with marks → `Playbook` spec, or every problem found."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from engine.load.pydantic_errors import problems_from_validation
from engine.load.yaml_nodes import Located, parse_yaml
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


def load_playbook_text(raw: bytes | str, path: str) -> LoadedPlaybook:
    """Parse and validate playbook text. Raises ProblemsFound listing every problem."""
    located = parse_yaml(raw, path)
    source = raw if isinstance(raw, str) else raw.decode("utf-8-sig")
    if not isinstance(located.data, dict):
        kind = type(located.data).__name__
        kind = {"list": "a list", "str": "a string", "int": "a number"}.get(kind, kind)
        raise ProblemsFound(
            [
                Problem(
                    path,
                    1,
                    1,
                    f"a playbook is a mapping (id: ..., name: ..., trigger: ..., steps: ...), not {kind}",
                )
            ]
        )
    try:
        spec = Playbook.model_validate(located.data)
    except ValidationError as exc:
        raise ProblemsFound(problems_from_validation(exc, located, Playbook)) from None
    return LoadedPlaybook(spec=spec, located=located, source=source)


def load_playbook(path: Path, display: str | None = None) -> LoadedPlaybook:
    """Read and load the playbook file at `path`; `display` is the name used in problems."""
    shown = display or str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ProblemsFound([Problem(shown, 1, 1, f"cannot read file: {exc.strerror}")]) from None
    return load_playbook_text(raw, shown)
