"""Validate a set of playbook files (or directories of them) together."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from engine.catalog.snapshot import Catalog
from engine.load import LoadAttempt, LoadedPlaybook, attempt_playbook
from engine.problems import Problem
from engine.render import EmailRenderer
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.validate.data_checks import catalogue_problems
from engine.validate.health import health_condition_problems, health_model_problems
from engine.validate.semantic import check_playbook


@dataclass
class ValidationReport:
    """What `touchflow validate` found: loaded playbooks, and every problem across all files."""

    playbooks: list[LoadedPlaybook] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files: int = 0

    @property
    def ok(self) -> bool:
        """No errors (warnings do not count)."""
        return not self.errors

    @property
    def errors(self) -> list[Problem]:
        """The problems that are errors: what makes `validate` fail."""
        return [p for p in self.problems if p.severity == "error"]


def playbook_files(paths: Iterable[Path]) -> list[Path]:
    """Files named directly, plus every *.yaml / *.yml under directories, in a stable order."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted([*p.rglob("*.yaml"), *p.rglob("*.yml")]))
        else:
            out.append(p)
    return out


def validate_paths(
    paths: Iterable[Path],
    templates_dir: Path,
    base: Path | None = None,
    traits: TraitTypes = NO_TRAITS,
    catalog: Catalog | None = None,
    health_file: Path | None = None,
) -> ValidationReport:
    """Load and check every playbook (against the project's declared trait types); problems name
    files relative to `base` when possible. With a data `catalog`, event names and values the
    store has never seen are warnings. With a `health_file`, the health model is checked in the
    same run and `health:` conditions against it."""
    report = ValidationReport()
    health_display = _display(health_file, base) if health_file is not None else ""
    if health_file is not None:
        health_model, model_problems = health_model_problems(health_file, health_display)
        report.problems.extend(model_problems)
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
        attempt = attempt_playbook(path, _display(path, base))
        report.problems.extend(attempt.problems)
        loaded = attempt.playbook
        if loaded is None:
            continue
        # With model errors, `loaded` holds the parts that validated: checked in the same run.
        problems = [
            p for p in check_playbook(loaded, renderer, lambda p: _display(p, base), traits) if not _echo(p, attempt)
        ]
        if health_file is not None:
            problems += health_condition_problems(loaded, health_model, health_file.exists(), health_display)
        # Templates shared by several playbooks report their problems once.
        fresh = [p for p in problems if p not in template_problems_seen]
        template_problems_seen.update(problems)
        report.problems.extend(fresh)
        if catalog is not None:
            report.problems.extend(catalogue_problems(loaded, catalog))
        if attempt.valid_keys is not None and "id" not in attempt.valid_keys:
            continue
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
        if not any(p.severity == "error" for p in problems) and not attempt.problems:
            report.playbooks.append(loaded)
    report.problems.sort()
    return report


def _echo(problem: Problem, attempt: LoadAttempt) -> bool:
    """A problem that only repeats one already reported: a reference to a step left out of the
    checks because it did not validate."""
    return any(problem.message.startswith(f"no step with id '{sid}'") for sid in attempt.dropped_step_ids)


def _display(path: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)
