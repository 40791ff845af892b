"""Which sources of customer data a playbook reads, and the default freshness each needs.

A source is a table of the customer store (`accounts`, `contacts`) or one event name
(`event:login`, as `engine/store/freshness.py` names it). Every condition a playbook evaluates
counts — segment, trigger, goal, exit and step conditions —, since a stale source can make any of
them wrong.

An *absence* condition — no event in a window, a count at most n, a drop in a trend, an active
share at most p %, a last event older than d — is true for every subject once its events stop
arriving. Its own window is therefore the default freshness limit of its source: when the newest
event of that name is older than the window, the condition cannot tell a quiet customer from a
broken feed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from engine.load.yaml_nodes import parse_yaml
from engine.problems import Problem, did_you_mean
from engine.spec.conditions import (
    ActiveShare,
    EventWindow,
    FieldCondition,
    FirstEventCondition,
    LastEventCondition,
    NoEventWindow,
    NotOf,
    Occurrence,
    SinceEntry,
    Trend,
)
from engine.spec.playbook import DateTrigger, EventFilter, Goal, Playbook

TABLES = ("accounts", "contacts", "csms")
"""The tables of the customer store a freshness limit may name."""

EVENT_PREFIX = "event:"


def event_source(name: str) -> str:
    """The source name of the events called `name` (as `engine/store/freshness.py` records it)."""
    return f"{EVENT_PREFIX}{name}"


def source_of_setting(key: str) -> str:
    """The source a `freshness:` key of touchflow.yaml names: a table, or else an event name."""
    if key in TABLES or key.startswith(EVENT_PREFIX):
        return key
    return event_source(key)


def shown(source: str) -> str:
    """A source as people write it: `login` for `event:login`, `accounts` for the table."""
    return source.removeprefix(EVENT_PREFIX)


def sources_read(spec: Playbook) -> dict[str, timedelta | None]:
    """Source → its default freshness limit (the shortest absence window over it), or None when
    the playbook reads it only in ways a stopped feed cannot make true for everyone."""
    found: dict[str, timedelta | None] = {}
    subject_table = "contacts" if spec.subject == "contact" else "accounts"
    for node, negated in _walk(spec, False):
        if isinstance(node, FieldCondition):
            for name in node.root:
                table = _table_of(name, subject_table)
                found.setdefault(table, None)
                if table == "contacts" and spec.subject == "contact" and "." not in name:
                    found.setdefault("accounts", None)  # a bare name may be the account's
        elif isinstance(node, EventWindow | NoEventWindow | Trend | ActiveShare | SinceEntry):
            _add(found, event_source(node.name), _absence_window(node, negated))
        elif isinstance(node, LastEventCondition):
            _add(found, event_source(node.last_event.name), _absence_window(node.last_event, negated))
        elif isinstance(node, FirstEventCondition):
            # A stopped feed brings no new first events: nothing becomes true for everyone.
            _add(found, event_source(node.first_event.name), None)
        elif isinstance(node, EventFilter):
            _add(found, event_source(node.name), None)
        elif isinstance(node, Goal) and node.event is not None:
            _add(found, event_source(node.event), None)
        elif isinstance(node, DateTrigger):
            found.setdefault(_table_of(node.date, subject_table), None)
    return found


def event_names(playbooks: Iterable[Playbook]) -> set[str]:
    """Every event name the playbooks read (what a `freshness:` key may name, besides tables)."""
    return {shown(s) for spec in playbooks for s in sources_read(spec) if s.startswith(EVENT_PREFIX)}


def limits_for(spec: Playbook, configured: Mapping[str, timedelta]) -> dict[str, timedelta]:
    """Source → the limit that applies to it for this playbook: the project's `freshness:` setting
    when it names the source, else the playbook's own default (absence windows); sources with
    neither are not judged."""
    by_source = {source_of_setting(k): v for k, v in configured.items()}
    out: dict[str, timedelta] = {}
    for source, default in sources_read(spec).items():
        limit = by_source.get(source, default)
        if limit is not None:
            out[source] = limit
    return out


def _add(found: dict[str, timedelta | None], source: str, window: timedelta | None) -> None:
    old = found.get(source)
    if window is None:
        found.setdefault(source, None)
    else:
        found[source] = window if old is None else min(old, window)


def _absence_window(node: Any, negated: bool) -> timedelta | None:
    """The window in which no data makes `node` true for everyone; None when it does not."""
    absent: timedelta | None
    present: timedelta | None
    if isinstance(node, NoEventWindow):
        absent = node.within
        present = None
    elif isinstance(node, EventWindow):
        at_most_only = node.at_most is not None and node.at_least is None
        absent = node.within if at_most_only else None
        present = node.within  # not (at least n in W) is true for everyone without data too
    elif isinstance(node, Trend):
        absent = node.window if node.drop_at_least is not None else None
        present = node.window
    elif isinstance(node, ActiveShare):
        absent = node.within if node.at_least is None else None
        present = node.within
    elif isinstance(node, Occurrence):
        absent = node.older_than
        present = node.more_recent_than
    else:
        return None
    return present if negated else absent


def _table_of(field_name: str, subject_table: str) -> str:
    if field_name.startswith("account."):
        return "accounts"
    if field_name.startswith("contact."):
        return "contacts"
    return subject_table


def _walk(node: Any, negated: bool) -> Iterable[tuple[Any, bool]]:
    """Every model inside `node`, with whether an odd number of `not`s wraps it."""
    if isinstance(node, BaseModel):
        yield node, negated
        for name in type(node).model_fields:
            yield from _walk(getattr(node, name), negated != isinstance(node, NotOf))
    elif isinstance(node, list | tuple):
        for item in node:
            yield from _walk(item, negated)
    elif isinstance(node, dict):
        for item in node.values():
            yield from _walk(item, negated)


def freshness_problems(path: Path, configured: Mapping[str, timedelta], specs: Iterable[Playbook]) -> list[Problem]:
    """A problem per `freshness:` key of touchflow.yaml that names neither a table nor an event
    any playbook reads, with "did you mean" and the key's line:col."""
    known = sorted(event_names(specs))
    choices = [*TABLES, *known]
    wrong = [key for key in configured if source_of_setting(key) not in {*TABLES, *(event_source(n) for n in known)}]
    if not wrong:
        return []
    located = parse_yaml(path.read_bytes(), str(path)) if path.is_file() else None
    problems = []
    for key in wrong:
        line, col = located.where(("freshness", key)) if located is not None else (1, 1)
        message = (
            f"freshness: no source '{key}'{did_you_mean(shown(key), choices)}; "
            f"a table ({', '.join(TABLES)}) or an event the playbooks read ({', '.join(known) or 'none'})"
        )
        problems.append(Problem(str(path), line, col, message))
    return problems
