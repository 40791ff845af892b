"""A compiled playbook: frozen, with the SQL that selects who enters at a given moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    FromClause,
    Select,
    String,
    and_,
    cast,
    exists,
    func,
    or_,
    select,
    true,
)

from engine.compile.conditions import SqlContext, compile_condition, describe_condition
from engine.compile.triggers import Source, trigger_source
from engine.load import LoadedPlaybook
from engine.spec import AnyStep, Playbook
from engine.spec.base import format_duration
from engine.spec.playbook import BecameTrueTrigger, DateTrigger, EventTrigger, ScheduleTrigger, step_ids
from engine.spec.steps import step_kind
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.models import accounts, condition_state, contacts, enrollments

StepKind = Literal["email", "task", "wait", "branch", "update", "webhook", "exit"]


@dataclass(frozen=True)
class CompiledStep:
    """A step with its resolved id and position."""

    index: int
    id: str
    kind: StepKind
    spec: AnyStep


@dataclass(frozen=True)
class CompiledPlaybook:
    """What runs: the spec, its version, its steps, and SQL builders parameterised by `now`."""

    spec: Playbook
    version: str
    path: str
    steps: tuple[CompiledStep, ...]
    text: str = ""
    """The playbook file's text (kept with each version in the store)."""
    traits: TraitTypes = NO_TRAITS
    """The project's declared trait types, which the SQL reads traits as."""

    @property
    def id(self) -> str:
        return self.spec.id

    def index_of(self, step_id: str | None) -> int | None:
        """The position of the step with this id, or None."""
        return next((s.index for s in self.steps if s.id == step_id), None)

    @property
    def subject(self) -> Literal["account", "contact"]:
        return self.spec.subject

    @property
    def edge_triggered(self) -> bool:
        """True when entering needs the previous evaluation's state (condition became true)."""
        return isinstance(self.spec.trigger, BecameTrueTrigger)

    def context(self, now: datetime) -> SqlContext:
        subject_table = contacts if self.subject == "contact" else accounts
        return SqlContext(self.subject, subject_table, accounts, now, traits=self.traits)

    def _base(self, ctx: SqlContext) -> FromClause:
        if ctx.subject_table is ctx.account_table:
            return ctx.subject_table
        return ctx.subject_table.join(ctx.account_table, ctx.account_table.c.id == ctx.subject_table.c.account_id)

    def source(self, now: datetime) -> Source:
        """Where occurrences come from at `now`, and their key."""
        ctx = self.context(now)
        return trigger_source(self.spec, ctx, self._base(ctx))

    def matches(self, now: datetime) -> ColumnElement[bool]:
        """segment ∧ trigger at `now` (who would enter, before entry rules)."""
        # Segment first: cheap column tests before the trigger's event probes (SQLite keeps the order).
        parts: list[ColumnElement[bool]] = []
        if self.spec.segment is not None:
            parts.append(compile_condition(self.spec.segment, self.context(now)))
        parts.append(self.source(now).fires)
        return and_(true(), *parts)

    def matching_subjects(self, now: datetime) -> Select[Any]:
        """SELECT DISTINCT subject ids for which segment ∧ trigger hold at `now`."""
        src = self.source(now)
        return select(src.subject_id.label("subject_id")).select_from(src.from_).where(self.matches(now)).distinct()

    def occurrences(self, now: datetime) -> Select[Any]:
        """SELECT subject_id, account_id, trigger_key for which segment ∧ trigger hold at `now`.

        Entry rules aside: this is what `matched` counts. The evaluator materialises it once per
        playbook and tick, then admits from it (see `admit`).
        """
        ctx = self.context(now)
        src = self.source(now)
        account_id = ctx.subject_table.c.account_id if self.subject == "contact" else ctx.subject_table.c.id
        columns = [src.subject_id.label("subject_id"), account_id.label("account_id"), src.key.label("trigger_key")]
        return select(*columns).select_from(src.from_).where(self.matches(now))

    def admit(self, occurrences: FromClause, now: datetime) -> Select[Any]:
        """The occurrences (a table or subquery with subject_id, account_id, trigger_key) that enter
        at `now` under the entry rules."""
        occ = occurrences.c
        guards = [~self._already_entered(occ.subject_id, occ.trigger_key, now)]
        if self.edge_triggered:
            guards.append(~self._disarmed(occ.subject_id))
        if isinstance(self.spec.trigger, EventTrigger) and not self.spec.entry.allow_concurrent:
            # One enrollment per subject per tick, keyed by its earliest matching event; the other
            # events still inside the trigger's window may start one once this journey has ended.
            first_key = cast(func.min(cast(occ.trigger_key, BigInteger)), String).label("trigger_key")
            return (
                select(occ.subject_id, occ.account_id, first_key)
                .where(*guards)
                .group_by(occ.subject_id, occ.account_id)
            )
        return select(occ.subject_id, occ.account_id, occ.trigger_key).where(*guards)

    def candidates(self, now: datetime) -> Select[Any]:
        """SELECT subject_id, account_id, trigger_key of subjects entering at `now` (one statement)."""
        return self.admit(self.occurrences(now).subquery("occurrences"), now)

    def _already_entered(self, subject_id: Any, key: ColumnElement[Any], now: datetime) -> ColumnElement[bool]:
        # One probe of the enrollments' unique index prefix (playbook, subject_type, subject_id).
        entry = self.spec.entry
        blockers: list[ColumnElement[bool]] = [enrollments.c.trigger_key == key]
        if entry.once_ever:
            blockers.append(true())
        if not entry.allow_concurrent:
            blockers.append(enrollments.c.status == "active")
        if entry.once_per is not None:
            blockers.append(enrollments.c.enrolled_at > now - entry.once_per)
        trigger = self.spec.trigger
        if isinstance(trigger, BecameTrueTrigger) and trigger.cooldown:
            blockers.append(enrollments.c.enrolled_at > now - trigger.cooldown)
        return exists().where(
            enrollments.c.playbook_id == self.id,
            enrollments.c.subject_type == self.subject,
            enrollments.c.subject_id == subject_id,
            or_(*blockers),
        )

    def _disarmed(self, subject_id: Any) -> ColumnElement[bool]:
        # Entered, and the condition not seen false since: no new edge yet.
        return exists().where(
            condition_state.c.playbook_id == self.id,
            condition_state.c.subject_type == self.subject,
            condition_state.c.subject_id == subject_id,
            condition_state.c.armed.is_(False),
        )

    def describe_trigger(self) -> str:
        """Why subjects enter, in words, for the audit."""
        trigger = self.spec.trigger
        if isinstance(trigger, DateTrigger):
            offset = trigger.offset
            if not offset:
                when = "on"
            elif offset.total_seconds() < 0:
                when = f"{format_duration(-offset)} before"
            else:
                when = f"{format_duration(offset)} after"
            return f"{when} {'the anniversary of ' if trigger.every_year else ''}{trigger.date}"
        if isinstance(trigger, EventTrigger):
            return f"event {trigger.event.name}"
        if isinstance(trigger, BecameTrueTrigger):
            return f"became true: {describe_condition(trigger.became_true)}"
        if isinstance(trigger, ScheduleTrigger):
            return f"schedule {trigger.schedule.cron} ({trigger.schedule.timezone})"
        return describe_condition(trigger)


def compile_playbook(loaded: LoadedPlaybook, traits: TraitTypes = NO_TRAITS) -> CompiledPlaybook:
    """Freeze a validated playbook into what the evaluator and the journey stages run."""
    return compile_spec(loaded.spec, loaded.version, loaded.path, loaded.source, traits)


def compile_spec(
    spec: Playbook, version: str, path: str = "", source: str = "", traits: TraitTypes = NO_TRAITS
) -> CompiledPlaybook:
    """Compile a spec (from a file, or a stored earlier version) under the project's trait types."""
    steps = tuple(
        CompiledStep(index=i, id=sid, kind=cast_kind(step_kind(step)), spec=step)
        for i, (step, sid) in enumerate(zip(spec.steps, step_ids(spec.steps), strict=True))
    )
    return CompiledPlaybook(spec=spec, version=version, path=path, steps=steps, text=source, traits=traits)


def cast_kind(kind: str | None) -> StepKind:
    if kind not in ("email", "task", "wait", "branch", "update", "webhook", "exit"):
        raise ValueError(f"unknown step kind {kind!r}")
    return kind  # type: ignore[return-value]
