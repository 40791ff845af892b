"""A compiled playbook: frozen, with the SQL that selects who enters at a given moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Select, String, and_, cast, exists, literal, or_, select, true

from engine.compile.conditions import SqlContext, compile_condition, describe_condition
from engine.load import LoadedPlaybook
from engine.spec import EmailStep, Playbook, TaskStep, WaitStep
from engine.spec.base import format_duration
from engine.spec.playbook import DateTrigger, step_id
from engine.store.models import accounts, contacts, enrollments

StepKind = Literal["email", "task", "wait"]


@dataclass(frozen=True)
class CompiledStep:
    """A step with its resolved id and position."""

    index: int
    id: str
    kind: StepKind
    spec: EmailStep | TaskStep | WaitStep


@dataclass(frozen=True)
class CompiledPlaybook:
    """What runs: the spec, its version, its steps, and SQL builders parameterised by `now`."""

    spec: Playbook
    version: str
    path: str
    steps: tuple[CompiledStep, ...]

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def subject(self) -> Literal["account", "contact"]:
        return self.spec.subject

    def _context(self) -> tuple[Any, Any]:
        subject_table = contacts if self.subject == "contact" else accounts
        return subject_table, accounts

    def _from(self, columns: list[Any]) -> Select[Any]:
        subject_table, account_table = self._context()
        stmt = select(*columns).select_from(subject_table)
        if subject_table is not account_table:
            stmt = stmt.join(account_table, account_table.c.id == subject_table.c.account_id)
        return stmt

    def matches(self, now: datetime) -> ColumnElement[bool]:
        """segment ∧ trigger at `now` (who would enter, before entry rules)."""
        subject_table, account_table = self._context()
        ctx = SqlContext(self.subject, subject_table, account_table, now)
        parts: list[ColumnElement[bool]] = [true()]
        if self.spec.segment is not None:
            parts.append(compile_condition(self.spec.segment, ctx))
        trigger = self.spec.trigger
        if isinstance(trigger, DateTrigger):
            parts.append(_date_window(ctx.column(trigger.date), trigger, now))
        else:
            parts.append(compile_condition(trigger, ctx))
        return and_(*parts)

    def trigger_key(self, now: datetime) -> ColumnElement[Any]:
        """The occurrence a subject enters for: the date's value, the day (once_per), or ''."""
        subject_table, account_table = self._context()
        trigger = self.spec.trigger
        if isinstance(trigger, DateTrigger):
            ctx = SqlContext(self.subject, subject_table, account_table, now)
            return cast(ctx.column(trigger.date), String)
        if self.spec.entry.once_per is not None:
            return literal(now.date().isoformat(), String)
        return literal("", String)

    def candidates(self, now: datetime) -> Select[Any]:
        """SELECT subject_id, account_id, trigger_key of subjects entering at `now`."""
        subject_table, _ = self._context()
        key = self.trigger_key(now)
        account_id = subject_table.c.account_id if self.subject == "contact" else subject_table.c.id
        return self._from(
            [
                subject_table.c.id.label("subject_id"),
                account_id.label("account_id"),
                key.label("trigger_key"),
            ]
        ).where(self.matches(now), ~self._already_entered(subject_table.c.id, key, now))

    def matched_count(self, now: datetime) -> Select[Any]:
        """SELECT count(*) of subjects matching segment ∧ trigger, entry rules aside."""
        from sqlalchemy import func

        return self._from([func.count()]).where(self.matches(now))

    def _already_entered(self, subject_id: Any, key: ColumnElement[Any], now: datetime) -> ColumnElement[bool]:
        # One probe of the enrollments' unique index prefix (playbook, subject_type, subject_id):
        # same occurrence already entered, still in the journey, or inside the once_per period.
        blockers = [enrollments.c.trigger_key == key, enrollments.c.status == "active"]
        if self.spec.entry.once_per is not None:
            blockers.append(enrollments.c.enrolled_at > now - self.spec.entry.once_per)
        return exists().where(
            enrollments.c.playbook_id == self.id,
            enrollments.c.subject_type == self.subject,
            enrollments.c.subject_id == subject_id,
            or_(*blockers),
        )

    def describe_trigger(self) -> str:
        """Why subjects enter, in words, for the audit."""
        trigger = self.spec.trigger
        if isinstance(trigger, DateTrigger):
            offset = trigger.offset
            when = (
                "on"
                if not offset
                else (
                    f"{format_duration(-offset)} before"
                    if offset < timedelta(0)
                    else f"{format_duration(offset)} after"
                )
            )
            return f"{when} {trigger.date}"
        return describe_condition(trigger)


def _date_window(column: ColumnElement[Any], trigger: DateTrigger, now: datetime) -> ColumnElement[bool]:
    # field + offset ∈ (now - window, now], rewritten so the column stands alone (index-friendly).
    if isinstance(column.type, String):  # not reachable: validation requires a date field
        raise TypeError("date trigger on a non-date column")
    from sqlalchemy import Date

    if isinstance(column.type, Date):
        today: date = now.date()
        latest = today - trigger.offset
        earliest = today - trigger.offset - trigger.window
        return and_(column > earliest, column <= latest)
    return and_(column > now - trigger.offset - trigger.window, column <= now - trigger.offset)


def compile_playbook(loaded: LoadedPlaybook) -> CompiledPlaybook:
    """Freeze a validated playbook into what the evaluator and the journey stages run."""
    steps = []
    for index, step in enumerate(loaded.spec.steps):
        kind: StepKind = "email" if isinstance(step, EmailStep) else "task" if isinstance(step, TaskStep) else "wait"
        steps.append(CompiledStep(index=index, id=step_id(step, index), kind=kind, spec=step))
    return CompiledPlaybook(spec=loaded.spec, version=loaded.version, path=loaded.path, steps=tuple(steps))
