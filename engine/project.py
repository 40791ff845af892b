"""A Touchflow project on disk: its playbooks, compiled, and its templates."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from engine.compile import CompiledPlaybook, compile_playbook
from engine.config import Settings
from engine.delivery_config import DeliverySettings, load_delivery
from engine.guard.sources import freshness_problems
from engine.plan.versions import VersionStore
from engine.problems import ProblemsFound
from engine.render import EmailRenderer
from engine.unsubscribe import UnsubscribeLinks, load_links
from engine.validate import validate_paths


@dataclass(frozen=True)
class Project:
    """Compiled playbooks and the renderer of one project directory."""

    settings: Settings
    playbooks: tuple[CompiledPlaybook, ...]
    renderer: EmailRenderer
    versions: VersionStore = field(default_factory=lambda: VersionStore({}))
    delivery: DeliverySettings = field(default_factory=DeliverySettings)

    def active(self, only: str | None = None) -> list[CompiledPlaybook]:
        """Active playbooks, or just `only` (whatever its status) when given."""
        if only is not None:
            chosen = [p for p in self.playbooks if p.id == only]
            if not chosen:
                known = ", ".join(p.id for p in self.playbooks)
                raise KeyError(f"no playbook '{only}' (known: {known})")
            return chosen
        return [p for p in self.playbooks if p.spec.status == "active"]

    @cached_property
    def links(self) -> UnsubscribeLinks:
        """Signs this project's unsubscribe links (see engine/unsubscribe.py)."""
        return load_links(self.settings.project_dir)

    def by_id(self) -> dict[str, CompiledPlaybook]:
        return {p.id: p for p in self.playbooks}


def load_project(settings: Settings) -> Project:
    """Validate and compile every playbook. Raises ProblemsFound: a tick never runs half-valid."""
    # Settings first: the playbooks are checked and compiled against the traits they declare.
    delivery = load_delivery(settings.project_dir)
    traits = delivery.traits
    report = validate_paths([settings.playbooks_dir], settings.templates_dir, settings.project_dir, traits)
    if report.errors:  # warnings (a template falling back to English) do not stop a run
        raise ProblemsFound(report.errors)
    compiled = tuple(compile_playbook(p, traits) for p in report.playbooks)
    yaml_path = settings.project_dir / "touchflow.yaml"
    if unknown_sources := freshness_problems(yaml_path, delivery.freshness, (p.spec for p in compiled)):
        raise ProblemsFound(unknown_sources)
    known = VersionStore({(p.id, p.version): p for p in compiled}, traits)
    renderer = EmailRenderer(settings.templates_dir)
    return Project(settings=settings, playbooks=compiled, renderer=renderer, versions=known, delivery=delivery)
