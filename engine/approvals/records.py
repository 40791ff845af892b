"""Approvals as records: who approved which content, when, with what comment — and, for the
console and `touchflow approvals list`, where every step's content stands now."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_

from engine.addresses import email_problem
from engine.approvals.content import NO_ARM, Content, ContentHasher, step_contents
from engine.compile import CompiledPlaybook
from engine.render import EmailRenderer
from engine.store.models import approvals

Key = tuple[str, str, str, str]
"""(playbook, step, arm, locale)."""


@dataclass(frozen=True)
class ApprovalStatus:
    """One approvable content and where it stands: its current hash, and the latest approval of
    it (which applies only while the hashes are equal)."""

    content: Content
    approved_hash: str | None = None
    approved_by: str | None = None
    approved_at: datetime | None = None
    comment: str | None = None

    @property
    def approved(self) -> bool:
        """Whether the latest approval covers exactly the current content."""
        return self.approved_hash == self.content.content_hash

    def as_dict(self) -> dict[str, Any]:
        """Plain fields, for JSON and tables."""
        c = self.content
        return {
            "playbook": c.playbook_id,
            "step": c.step_id,
            "arm": c.arm,
            "locale": c.locale or "default",
            "template": c.template,
            "approved": self.approved,
            "approved_by": self.approved_by,
            "approved_at": self.approved_at.isoformat(timespec="seconds") if self.approved_at else None,
            "comment": self.comment,
            "current_hash": c.content_hash,
            "approved_hash": self.approved_hash,
        }


def all_contents(playbooks: Iterable[CompiledPlaybook], renderer: EmailRenderer) -> list[Content]:
    """Every approvable content of `playbooks`, in playbook, step, arm and locale order."""
    hasher = ContentHasher(renderer)
    return [c for p in sorted(playbooks, key=lambda p: p.id) for c in step_contents(p, hasher)]


def list_approvals(
    conn: Connection, playbooks: Iterable[CompiledPlaybook], renderer: EmailRenderer
) -> list[ApprovalStatus]:
    """Every email step × arm × locale of `playbooks`: approved or not, by whom, when, with the
    current hash beside the latest approved one."""
    contents = all_contents(playbooks, renderer)
    latest: dict[Key, Any] = {}
    ids = sorted({c.playbook_id for c in contents})
    if ids:
        query = select(approvals).where(approvals.c.playbook_id.in_(ids)).order_by(approvals.c.id)
        for row in conn.execute(query):
            latest[(row.playbook_id, row.step_id, row.arm, row.locale)] = row  # the last one wins
    found = []
    for c in contents:
        last = latest.get((c.playbook_id, c.step_id, c.arm, c.locale))
        if last is None:
            found.append(ApprovalStatus(c))
        else:
            found.append(ApprovalStatus(c, last.content_hash, last.approved_by, last.approved_at, last.comment))
    return found


def approve(
    conn: Connection,
    playbooks: Mapping[str, CompiledPlaybook],
    renderer: EmailRenderer,
    playbook_id: str,
    step_id: str,
    arm: str | None,
    *,
    by: str,
    comment: str = "",
    now: datetime,
) -> list[Content]:
    """Approve the step's content as it is now — every locale of `arm`, or of every arm when
    `arm` is None — by `by` (an email address). The caller commits. LookupError naming the valid
    ids when the playbook, the step or the arm is not one; ValueError for a bad address."""
    if problem := email_problem(by):
        raise ValueError(f"--as {by!r}: {problem}")
    playbook = playbooks.get(playbook_id)
    if playbook is None:
        raise LookupError(f"no playbook '{playbook_id}'; playbooks: {', '.join(sorted(playbooks)) or 'none'}")
    contents = list(step_contents(playbook, ContentHasher(renderer)))
    steps = list(dict.fromkeys(c.step_id for c in contents))
    if step_id not in steps:
        listed = ", ".join(steps) or "none"
        raise LookupError(f"no email step '{step_id}' in playbook '{playbook_id}'; its email steps: {listed}")
    contents = [c for c in contents if c.step_id == step_id]
    if arm is not None:
        arms = sorted({c.arm for c in contents if c.arm != NO_ARM})
        if arm not in arms:
            listed = ", ".join(arms) if arms else "none (the step has no experiment)"
            raise LookupError(f"no arm '{arm}' in step '{step_id}' of '{playbook_id}'; its arms: {listed}")
        contents = [c for c in contents if c.arm == arm]
    if contents:
        conn.execute(
            insert(approvals),
            [
                {
                    "playbook_id": c.playbook_id,
                    "step_id": c.step_id,
                    "arm": c.arm,
                    "locale": c.locale,
                    "content_hash": c.content_hash,
                    "approved_by": by.strip(),
                    "approved_at": now,
                    "comment": comment,
                }
                for c in contents
            ],
        )
    return contents


def approved_hashes(conn: Connection, wanted: Sequence[tuple[Key, str]]) -> set[tuple[Key, str]]:
    """Which of `wanted` ((playbook, step, arm, locale), hash) have an approval of that hash."""
    if not wanted:
        return set()
    pairs = sorted(set(wanted))
    cols = (approvals.c.playbook_id, approvals.c.step_id, approvals.c.arm, approvals.c.locale, approvals.c.content_hash)
    query = select(*cols).where(tuple_(*cols).in_([(*k, h) for k, h in pairs])).distinct()
    return {((r[0], r[1], r[2], r[3]), r[4]) for r in conn.execute(query)}
