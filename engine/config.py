"""Where things are: the project directory, the database URL, the outbox. From the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


def _project_dir() -> Path:
    return Path(os.environ.get("TOUCHFLOW_PROJECT_DIR", Path.cwd())).resolve()


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one Touchflow project."""

    project_dir: Path
    database_url: str
    outbox_dir: Path

    @property
    def playbooks_dir(self) -> Path:
        return self.project_dir / "playbooks"

    @property
    def templates_dir(self) -> Path:
        return self.project_dir / "templates" / "email"


def load_settings() -> Settings:
    """Settings from the environment: TOUCHFLOW_PROJECT_DIR, TOUCHFLOW_DATABASE_URL, TOUCHFLOW_OUTBOX."""
    project = _project_dir()
    url = os.environ.get("TOUCHFLOW_DATABASE_URL") or f"sqlite:///{project / 'touchflow.db'}"
    outbox = Path(os.environ.get("TOUCHFLOW_OUTBOX", project / "outbox"))
    return Settings(project_dir=project, database_url=url, outbox_dir=outbox.resolve())


MAX_DISPATCHERS = 32
"""The most dispatcher processes one tick starts: each holds its own connections and sending
threads, so a typo (one zero more) must be refused, not obeyed. Past this, add workers."""
