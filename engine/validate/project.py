"""Validate a set of playbook files (or directories of them) together."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.load import LoadedPlaybook, load_playbook
from engine.problems import Problem, ProblemsFound
from engine.render import EmailRenderer
from engine.validate.semantic import check_playbook


@dataclass
class ValidationReport:
    """What `touchflow validate` found: loaded playbooks, and every problem across all files."""

    playbooks: list[LoadedPlaybook] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus every *.yaml / *.yml under directories, in a stable order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")]))
        else:
            out.append(p)
    return out


def validate_paths(paths: Iterable[Path], templates_dir: Path, base: Path | None = None) -> ValidationReport:
    """Load and check every playbook; problems name files relative to `base` when possible."""
    report = ValidationReport()
    renderer = EmailRenderer(templates_dir)
    first_seen: dict[str, LoadedPlaybook] = {}
    template_problems_seen: set[Problem] = set()
    paths = list(paths)
    for given in paths:
        if not given.exists():
            report.problems.append(Problem(_display(given, base), 1, 1, "no such file or directory"))
        elif given.is_dir() and not playbook_files([given]):
            report.problems.append(Problem(_display(given, base), 1, 1, "no playbook files (*.yaml, *.yml) here"))
    for path in playbook_files(p for p in paths if p.exists()):
        report.files += 1
        try:
            loaded = load_playbook(path, _display(path, base))
        except ProblemsFound as exc:
            report.problems.extend(exc.problems)
            continue
        problems = check_playbook(loaded, renderer, lambda p: _display(p, base))
        # Templates shared by several playbooks report their problems once.
        fresh = [p for p in problems if p not in template_problems_seen]
        template_problems_seen.update(problems)
        report.problems.extend(fresh)
        other = first_seen.get(loaded.spec.id)
        if other is not None:
            line, col = loaded.located.where(("id",))
            report.problems.append(
                Problem(
                    loaded.path,
                    line,
                    col,
                    f"playbook id '{loaded.spec.id}' is also used by {other.path}",
                )
            )
            continue
        first_seen[loaded.spec.id] = loaded
        if not problems:
            report.playbooks.append(loaded)
    report.problems.sort()
    return report


def _display(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)
