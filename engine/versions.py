"""Every version of a playbook that has run, so enrollments in flight can finish on theirs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from engine.compile import CompiledPlaybook
from engine.compile.playbook import compile_spec
from engine.load import load_playbook_text
from engine.store.bulk import conflict_insert
from engine.store.models import playbook_versions


def remember(conn: Connection, playbook: CompiledPlaybook, now: datetime) -> None:
    """Record the playbook's current version (its canonical spec) if it is new."""
    row = {
        "playbook_id": playbook.id,
        "version": playbook.version,
        # The text as written: reloading it gives back exactly this spec (a JSON dump would turn
        # dates into strings and defaults into explicit operators).
        "spec": {"source": playbook.text, "path": playbook.path},
        "first_seen_at": now,
    }
    conn.execute(
        conflict_insert(conn, playbook_versions).on_conflict_do_nothing(index_elements=["playbook_id", "version"]),
        [row],
    )


class VersionStore:
    """Earlier versions, loaded from the store on demand and compiled once."""

    def __init__(self, known: dict[tuple[str, str], CompiledPlaybook]) -> None:
        self._cache = dict(known)

    def get(self, conn: Connection, playbook_id: str, version: str) -> CompiledPlaybook | None:
        """The compiled version, or None when it was never recorded."""
        key = (playbook_id, version)
        if key not in self._cache:
            spec = conn.execute(
                select(playbook_versions.c.spec).where(
                    playbook_versions.c.playbook_id == playbook_id, playbook_versions.c.version == version
                )
            ).scalar_one_or_none()
            if spec is None or not spec.get("source"):
                return None
            loaded = load_playbook_text(spec["source"], f"{spec.get('path') or playbook_id}@{version}")
            self._cache[key] = compile_spec(loaded.spec, version, loaded.path, loaded.source)
        return self._cache[key]
