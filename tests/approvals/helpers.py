"""A project with `approvals: required`, and what its outbox received."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from engine.approvals import approve
from engine.config import Settings
from engine.project import Project, load_project
from tests.journeys.helpers import NOW, load, playbook

HELLO = playbook(
    "hello",
    """\
  - id: greet
    email: {to: {role: [admin]}, template: welcome/hello}
""",
)
ARMS = playbook(
    "arms",
    """\
  - id: greet
    email:
      to: {role: [admin]}
      template: welcome/hello
      experiment:
        arms:
          - {id: plain}
          - {id: short, subject: {en: "Hi {{ account.name }}", ko: "안녕하세요 {{ account.name }}"}}
""",
)


def with_settings(proj: Project, text: str) -> Project:
    """The project reloaded with `touchflow.yaml` holding `text`."""
    (proj.settings.project_dir / "touchflow.yaml").write_text(text, encoding="utf-8")
    return load_project(proj.settings)


def required(tmp_path: Path, db_url: str, *playbooks: str) -> Project:
    """A project of `playbooks` whose `touchflow.yaml` says `approvals: required`."""
    return with_settings(load(tmp_path, db_url, *playbooks), "approvals: required\n")


def reload(settings: Settings) -> Project:
    """The project as its files are now (after an edit)."""
    return load_project(settings)


def template(proj: Project, name: str) -> Path:
    """A template file of the project (to edit)."""
    return proj.settings.templates_dir / name


def approve_now(db: Engine, proj: Project, pid: str, step: str, arm: str | None = None) -> None:
    """Approve a step's content as it is now, as a marketer."""
    with db.begin() as conn:
        approve(conn, proj.by_id(), proj.renderer, pid, step, arm, by="mina@touchflow.example", comment="ok", now=NOW)


def outbox_keys(proj: Project) -> list[str]:
    """The send keys of the messages in the outbox."""
    outbox = proj.settings.outbox_dir
    return sorted(f.stem for f in outbox.glob("*.eml")) if outbox.exists() else []
