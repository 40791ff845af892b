"""Checks of a loaded playbook against the store catalogue and the templates, with line:col."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from pathlib import Path as FilePath
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import croniter

from engine.load import LoadedPlaybook
from engine.load.yaml_nodes import Path
from engine.problems import Problem, did_you_mean
from engine.render import EmailRenderer
from engine.spec import AnyStep, BranchStep, EmailStep, Playbook, TaskStep, UpdateStep, WaitStep, WebhookStep
from engine.spec.conditions import (
    BOOLEAN_KEYS,
    EVENT_KEYS,
    AllOf,
    AnyOf,
    EngagedCondition,
    EventsCondition,
    FieldCondition,
    FieldOps,
    NotOf,
    PerTier,
    SinceEntryCondition,
)
from engine.spec.playbook import BecameTrueTrigger, DateTrigger, EventTrigger, ScheduleTrigger, step_ids
from engine.spec.steps import WaitUntil
from engine.spec.traits import NO_TRAITS, TraitTypes
from engine.store.catalogue import FieldInfo, known_field_names, resolve_field
from engine.validate.step_ids import unstable_step_ids
from engine.validate.templates import inline_template_problems, template_file_problems

_ORDERING = ("lt", "lte", "gt", "gte", "between")
_RELATIVE_DATE = ("within_next", "within_last", "older_than", "further_than")

# The project's declared trait types, for the one walk of `check_playbook` (set there, read by
# `_resolve`): every check below resolves field names the same way without each carrying them.
_TRAITS: ContextVar[TraitTypes] = ContextVar("declared_traits", default=NO_TRAITS)


def _resolve(name: str, spec: Playbook) -> FieldInfo | None:
    return resolve_field(name, spec.subject, _TRAITS.get())


def check_playbook(
    loaded: LoadedPlaybook,
    renderer: EmailRenderer,
    display: Callable[[FilePath], str] = str,
    traits: TraitTypes = NO_TRAITS,
) -> list[Problem]:
    """Every semantic problem of one playbook, pointing into its file (or a template file), with
    traits read as the project declares them."""
    found: list[Problem] = []
    declared = _TRAITS.set(traits)
    try:
        for path, message in _spec_problems(loaded.spec, renderer):
            line, col = loaded.located.where(path)
            found.append(Problem(loaded.path, line, col, message))
    finally:
        _TRAITS.reset(declared)
    for name in _templates_used(loaded.spec):
        found.extend(template_file_problems(renderer, name, display))
    return found


def _spec_problems(spec: Playbook, renderer: EmailRenderer) -> Iterator[tuple[Path, str]]:
    if spec.segment is not None:
        yield from _condition(spec.segment, ("segment",), spec)
    yield from _trigger(spec)
    ids = step_ids(spec.steps)
    email_ids = [sid for step, sid in zip(spec.steps, ids, strict=True) if isinstance(step, EmailStep)]
    if spec.goal is not None and spec.goal.condition is not None:
        yield from _condition(spec.goal.condition, ("goal", "condition"), spec, email_ids)
    if spec.exit_ is not None:
        yield from _condition(spec.exit_, ("exit",), spec, email_ids)
    seen: set[str] = set()
    for i, step in enumerate(spec.steps):
        at: Path = ("steps", i)
        sid = ids[i]
        if sid in seen:
            yield (*at, "id"), f"step id '{sid}' is used twice; step ids must be unique"
        seen.add(sid)
        earlier_emails = [x for x in email_ids if ids.index(x) < i]
        if step.if_ is not None:
            yield from _condition(step.if_, (*at, "if"), spec, earlier_emails)
        yield from _step(step, at, spec, renderer, ids, earlier_emails)
    yield from unstable_step_ids(spec)


def _step(
    step: AnyStep, at: Path, spec: Playbook, renderer: EmailRenderer, ids: list[str], earlier_emails: list[str]
) -> Iterator[tuple[Path, str]]:
    if isinstance(step, EmailStep):
        email = step.email
        if spec.subject == "account" and email.to is None:
            yield (*at, "email"), "an email to an account needs 'to: {role: [...]}'"
        if spec.subject == "contact" and email.to is not None:
            yield (*at, "email", "to"), "a contact subject is the recipient; remove 'to'"
        problem = _template_problem(renderer, email.template)
        if problem:
            yield (*at, "email", "template"), problem
        for n, arm in enumerate(email.experiment.arms if email.experiment else []):
            where = (*at, "email", "experiment", "arms", n)
            problem = _template_problem(renderer, arm.template) if arm.template is not None else None
            if problem:
                yield (*where, "template"), problem
            subjects = arm.subject if isinstance(arm.subject, dict) else {"": arm.subject or ""}
            for locale, text in subjects.items() if arm.subject is not None else ():
                errors = inline_template_problems(text, "subject") if text.strip() else ["the subject is empty"]
                for error in errors:
                    yield (*where, "subject", *((locale,) if locale else ())), error
    elif isinstance(step, TaskStep):
        for key in ("title", "body"):
            for error in inline_template_problems(getattr(step.task, key), _empty_as(key), _no_contact(spec, "task")):
                yield (*at, "task", key), error
    elif isinstance(step, BranchStep):
        yield from _condition(step.branch.if_, (*at, "branch", "if"), spec, earlier_emails)
        for key, target in (("then", step.branch.then), ("else", step.branch.else_)):
            if target is not None and target not in ids:
                yield (*at, "branch", key), f"no step with id '{target}'{did_you_mean(target, ids)}"
    elif isinstance(step, WaitStep) and isinstance(step.wait, WaitUntil):
        info = _resolve(step.wait.until, spec)
        if info is None:
            yield (*at, "wait", "until"), _unknown_field(step.wait.until, spec)
        elif info.declared:
            yield (
                (*at, "wait", "until"),
                "a wait cannot end at a trait's date yet: wait until a date field, or a duration",
            )
        elif info.kind not in ("date", "datetime"):
            yield (*at, "wait", "until"), f"'{step.wait.until}' is a {info.kind} field, not a date"
    elif isinstance(step, UpdateStep):
        yield from _update(step, (*at, "update"), spec)
    elif isinstance(step, WebhookStep):
        for path, value in _strings(step.webhook.body, (*at, "webhook", "body")):
            for error in inline_template_problems(value, without_contact=_no_contact(spec, "webhook")):
                yield path, error


def _empty_as(key: str) -> str:
    # A title that renders empty is a problem; an empty body is allowed (the default).
    return "title" if key == "title" else "template"


def _no_contact(spec: Playbook, kind: str) -> str | None:
    """Why `contact` is empty in a task's or webhook's templates: an account subject has none."""
    if spec.subject == "account":
        return f"a {kind} of an account subject has no contact (use account, csm, or subject: contact)"
    return None


_READ_ONLY = {"id", "account_id", "traits"}


def _update(step: UpdateStep, at: Path, spec: Playbook) -> Iterator[tuple[Path, str]]:
    u = step.update
    if u.target == "contact" and spec.subject != "contact":
        yield (*at, "target"), "an account subject has no single contact to update; use target: account"
        return
    for key, names in (("set", list(u.set)), ("clear", u.clear)):
        for name in names:
            info = resolve_field(f"{u.target}.{name}", "contact")
            if info is None or (info.name in _READ_ONLY and not info.key):
                hint = did_you_mean(name, [n for n in known_field_names("contact") if "." not in n])
                yield (
                    (*at, key, name) if key == "set" else (*at, key),
                    f"cannot update '{name}' of the {u.target}{hint}",
                )
            elif key == "clear" and not info.key and not info.nullable:
                yield (*at, key), f"'{name}' cannot be empty; set it to a value instead"
            elif key == "set" and info.key and isinstance(u.set[name], date | datetime):
                yield (*at, key, name), "traits hold JSON values: write the date as text, e.g. '2026-12-01'"
            elif key == "set" and not info.key:
                yield from _value(info, "set", u.set[name], (*at, key, name))


def _strings(value: Any, at: Path) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*at, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, (*at, i))


def template_path_problem(name: str) -> str | None:
    """Why `name` cannot name a file under templates/email/ (absolute, `..`, empty parts), or None.

    Checked before the name reaches the file system: a path is never looked up outside the
    project's templates, and a glob of an absolute pattern raises instead of finding nothing.
    """
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ":" in parts[0]:
        why = "is an absolute path"
    elif ".." in parts:
        why = "leaves templates/email/ through '..'"
    elif any(part in ("", ".") for part in parts):
        why = "has an empty or '.' part"
    else:
        return None
    return f"template '{name}' {why}: write the path under templates/email/ without locale or extension"


def _template_problem(renderer: EmailRenderer, name: str) -> str | None:
    problem = template_path_problem(name)
    if problem is None and not renderer.variants(name):
        problem = _missing_template(renderer, name)
    return problem


def _missing_template(renderer: EmailRenderer, name: str) -> str:
    known = sorted(
        str(p.relative_to(renderer.templates_dir)).split(".")[0]
        for p in renderer.templates_dir.rglob("*.html")
        if not p.name.startswith("_")
    )
    where = f"{renderer.templates_dir.parent.name}/{renderer.templates_dir.name}/"
    return f"template '{name}' not found under {where}{did_you_mean(name, known)}"


def _trigger(spec: Playbook) -> Iterator[tuple[Path, str]]:
    once_per = spec.entry.once_per
    if once_per is not None and once_per < timedelta(days=1):
        yield ("entry", "once_per"), "once_per is at least 1d (entry is decided per day)"
    trigger = spec.trigger
    if isinstance(trigger, DateTrigger):
        info = _resolve(trigger.date, spec)
        if info is None:
            yield ("trigger", "date"), _unknown_field(trigger.date, spec)
        elif info.kind not in ("date", "datetime"):
            yield ("trigger", "date"), f"'{trigger.date}' is a {info.kind} field, not a date{_declare_hint(info)}"
        elif trigger.every_year and info.kind != "date":
            yield ("trigger", "every_year"), "anniversaries need a date field, not a date-time"
    elif isinstance(trigger, BecameTrueTrigger):
        yield from _condition(trigger.became_true, ("trigger", "became_true"), spec)
    elif isinstance(trigger, ScheduleTrigger):
        yield from _schedule(trigger)
    elif not isinstance(trigger, EventTrigger):
        yield from _condition(trigger, ("trigger",), spec)


def _schedule(trigger: ScheduleTrigger) -> Iterator[tuple[Path, str]]:
    try:
        ZoneInfo(trigger.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        zones = sorted(available_timezones())
        hint = did_you_mean(trigger.schedule.timezone, zones)
        yield ("trigger", "schedule", "timezone"), f"unknown time zone '{trigger.schedule.timezone}'{hint}"
    if not croniter.is_valid(trigger.schedule.cron):
        yield (
            ("trigger", "schedule", "cron"),
            (f"'{trigger.schedule.cron}' is not a cron expression (minute hour day-of-month month day-of-week)"),
        )


def _condition(cond: Any, at: Path, spec: Playbook, emails: list[str] | None = None) -> Iterator[tuple[Path, str]]:
    """Problems of a condition. `emails` is set where enrollment conditions are allowed: the ids
    of the email steps an `engaged` may refer to."""
    if isinstance(cond, AllOf):
        for i, sub in enumerate(cond.all):
            yield from _condition(sub, at + ("all", i), spec, emails)
    elif isinstance(cond, AnyOf):
        for i, sub in enumerate(cond.any):
            yield from _condition(sub, at + ("any", i), spec, emails)
    elif isinstance(cond, NotOf):
        yield from _condition(cond.not_, at + ("not",), spec, emails)
    elif isinstance(cond, EngagedCondition | SinceEntryCondition):
        key = "engaged" if isinstance(cond, EngagedCondition) else "since_entry"
        if emails is None:
            yield (*at, key), f"'{key}' is about an enrollment: use it in goal, exit, a step's if or a branch"
        elif isinstance(cond, EngagedCondition) and cond.engaged.step not in emails:
            step = cond.engaged.step
            yield (*at, key, "step"), f"no earlier email step '{step}'{did_you_mean(step, emails)}"
    elif isinstance(cond, EventsCondition) and cond.events.per == "contact" and spec.subject == "contact":
        yield at + ("events", "per"), "per: contact is the default for contact subjects; remove it"
    elif isinstance(cond, EventsCondition) and isinstance(cond.events.at_least, PerTier):
        if not cond.events.at_least.thresholds():
            yield at + ("events", "at_least"), "give a threshold for at least one tier"
    elif isinstance(cond, FieldCondition):
        for name, test in cond.root.items():
            info = _resolve(name, spec)
            if info is None:
                yield at + (name,), _unknown_field(name, spec)
            elif isinstance(test, FieldOps):
                yield from _ops(info, test, at + (name,))
            else:
                yield from _value(info, "eq", test, at + (name,))


def _declare_hint(info: FieldInfo) -> str:
    """For an undeclared trait: how to declare it as a date in touchflow.yaml."""
    if not info.key or info.declared:
        return ""
    return f"; to use it as a date, declare it in touchflow.yaml: traits: {{{info.table}: {{{info.key}: date}}}}"


def _unknown_field(name: str, spec: Playbook) -> str:
    if name.startswith("contact.") and spec.subject == "account":
        return f"'{name}': an account subject has no single contact; use subject: contact"
    hint = did_you_mean(name, [*known_field_names(spec.subject), *BOOLEAN_KEYS, *EVENT_KEYS])
    return f"unknown field '{name}' for {spec.subject} subjects{hint}"


def _ops(info: FieldInfo, ops: FieldOps, at: Path) -> Iterator[tuple[Path, str]]:
    for op in sorted(ops.model_fields_set):
        key = "in" if op == "in_" else op
        value = getattr(ops, op)
        if op == "exists":
            continue
        if info.key and not info.declared and (op in _RELATIVE_DATE or isinstance(value, date)):
            yield (
                at + (key,),
                f"traits hold JSON values: compare '{info.key}' with text, numbers or true/false{_declare_hint(info)}",
            )
            continue
        if op in _RELATIVE_DATE:
            if info.kind not in ("date", "datetime"):
                yield at + (key,), f"'{key}' applies to date fields; '{info.label}' is a {info.kind} field"
            continue
        if op == "contains" and info.kind not in ("string", "json"):
            yield at + (key,), f"'contains' applies to text fields; '{info.label}' is a {info.kind} field"
            continue
        if info.kind == "boolean" and op in _ORDERING:
            yield at + (key,), f"'{key}' does not apply to boolean field '{info.label}'"
            continue
        for v in value if isinstance(value, list | tuple) else [value]:
            yield from _value(info, key, v, at + (key,))


def _value(info: FieldInfo, op: str, value: Any, at: Path) -> Iterator[tuple[Path, str]]:
    ok = {
        "number": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "date": isinstance(value, date) and not isinstance(value, datetime),
        "datetime": isinstance(value, datetime | date),
        "boolean": isinstance(value, bool),
        "json": True,
    }[info.kind]
    if not ok:
        example = {
            "number": "20000",
            "string": "low_touch",
            "date": "2026-01-31",
            "datetime": "2026-01-31T09:00:00",
        }
        hint = f", e.g. {example[info.kind]}" if info.kind in example else ""
        yield (
            at,
            f"'{info.label}' is a {info.kind} field; {op} needs a {info.kind}{hint} (got {value!r})",
        )


def _templates_used(spec: Playbook) -> list[str]:
    """The templates to check statically; names that are not paths under templates/ are
    reported at their line instead."""
    used = {s.email.template for s in spec.steps if isinstance(s, EmailStep)}
    for s in spec.steps:
        if isinstance(s, EmailStep) and s.email.experiment is not None:
            used.update(a.template for a in s.email.experiment.arms if a.template)
    return sorted(name for name in used if template_path_problem(name) is None)
