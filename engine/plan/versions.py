"""Every version of a playbook that has run, so enrollments in flight can finish on theirs, and
what an enrollment already sent, so that no version sends it again."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from engine.compile import CompiledPlaybook, CompiledStep
from engine.compile.playbook import compile_spec
from engine.load import load_playbook_text
from engine.spec import EmailStep
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.bulk import conflict_insert
from engine.store.models import ledger, playbook_versions


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

    def __init__(self, known: dict[tuple[str, str], CompiledPlaybook], traits: TraitTypes = NO_TRAITS) -> None:
        self._cache = dict(known)
        self._traits = traits

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
            self._cache[key] = compile_spec(loaded.spec, version, loaded.path, loaded.source, self._traits)
        return self._cache[key]


def migrated_index(
    current: CompiledPlaybook, old: CompiledPlaybook | None, step_index: int, step_id: str | None
) -> int | None:
    """Where a journey at `step_index` of `old` (recorded as `step_id`) goes on in `current`: at
    its step, found by id; when the step is gone, just after the last step both versions share
    before it (`on_missing_step: next`), or None (`exit`)."""
    if old is not None and step_index < len(old.steps):
        # The old version, compiled today, names the step as `current` does, even when the
        # enrollment recorded an id given under earlier rules (default ids by position).
        step_id = old.steps[step_index].id
    here = current.index_of(step_id)
    if here is not None:
        return here
    after = _after_shared(current, old, step_index) if old is not None else None
    if step_id is None:  # past the old version's last step (a final wait): stay past what it did
        return after if after is not None else min(step_index, len(current.steps))
    if current.spec.versions.on_missing_step == "exit" or old is None:
        return None
    return after if after is not None else 0


def _after_shared(current: CompiledPlaybook, old: CompiledPlaybook, index: int) -> int | None:
    """Just after the last step both versions share that comes before `index` in `old`."""
    for step in reversed(old.steps[:index]):
        shared = current.index_of(step.id)
        if shared is not None:
            return shared + 1
    return None


LIVE = ("planned", "claimed", "sending", "sent", "unknown")
"""Ledger statuses of an email that went out or may still go out."""


class SentInEnrollment:
    """Which emails each recipient already has (or may still get) in each enrollment of a batch.

    The last line of defence against an edit re-sending a message: a step whose id changed (a
    rename, a default id from before ids were derived from content, a journey restarted because
    nothing it had done was left in the file) has a new send key, so the ledger's unique key no
    longer stops it. What the recipient got is the step's template, whatever the step is called.
    """

    def __init__(self) -> None:
        self._by: dict[tuple[int, int], dict[str, str]] = defaultdict(dict)

    @classmethod
    def load(cls, conn: Connection, running: Sequence[Row[Any]]) -> SentInEnrollment:
        """The live email rows of these enrollments (one statement, on the account index)."""
        sent = cls()
        if not running:
            return sent
        rows = conn.execute(
            select(ledger.c.enrollment_id, ledger.c.contact_id, ledger.c.step_id, ledger.c.payload).where(
                ledger.c.account_id.in_(sorted({e.account_id for e in running})),
                ledger.c.enrollment_id.in_([e.id for e in running]),
                ledger.c.kind == "email",
                ledger.c.status.in_(LIVE),
            )
        )
        for row in rows:
            payload = row.payload if isinstance(row.payload, dict) else {}
            # Rows planned before the step's own template was recorded carry only the one sent.
            template = payload.get("step_template") or payload.get("template")
            if row.contact_id is not None and isinstance(template, str):
                sent.add(row.enrollment_id, row.contact_id, row.step_id, template)
        return sent

    def add(self, enrollment_id: int, contact_id: int, step_id: str, template: str) -> None:
        """Record a planned email (so a later step of the same walk sees it)."""
        self._by[(enrollment_id, contact_id)][step_id] = template

    def earlier(self, playbook: CompiledPlaybook, step: CompiledStep, enrollment_id: int, contact_id: int) -> list[str]:
        """The other steps that gave this recipient this step's template in the enrollment, when
        sending it now would be once too many; else [].

        A version may send one template several times on purpose (a reminder ladder): the n-th
        step with a template is a repeat only when the recipient has it n times already.
        """
        spec = step.spec
        if not isinstance(spec, EmailStep):
            return []
        template = spec.email.template
        others = sorted(
            sid for sid, t in self._by.get((enrollment_id, contact_id), {}).items() if t == template and sid != step.id
        )
        place = sum(
            1
            for s in playbook.steps[: step.index + 1]
            if isinstance(s.spec, EmailStep) and s.spec.email.template == template
        )
        return others if len(others) >= place else []
