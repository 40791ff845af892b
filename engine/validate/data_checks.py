"""Checks of a playbook against the data catalogue: names and values the store has never seen.

These are warnings, never errors: a new event or a new status value appears in the store after
the playbook that waits for it is written. An unknown *field* stays an error (`semantic.py`):
the columns are fixed by the store's schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, RootModel

from engine.catalog.snapshot import Catalog
from engine.load import LoadedPlaybook
from engine.load.yaml_nodes import Path
from engine.problems import Problem, did_you_mean
from engine.spec.conditions import (
    ActiveContacts,
    ActiveShare,
    EventWindow,
    FieldCondition,
    FieldOps,
    NoEventWindow,
    Occurrence,
    SinceEntry,
    Trend,
)
from engine.spec.playbook import EventFilter, Goal
from engine.store.catalogue import resolve_field

_EVENT_NAMED = (EventWindow, NoEventWindow, Occurrence, Trend, ActiveShare, ActiveContacts, SinceEntry, EventFilter)
_EQUALITY = ("eq", "ne", "in_", "not_in")


def catalogue_problems(loaded: LoadedPlaybook, catalog: Catalog) -> list[Problem]:
    """Warnings for event names and low-cardinality values `catalog` has never seen."""
    found: list[Problem] = []
    for path, message in _walk(loaded.spec, (), loaded.spec.subject, catalog):
        line, col = loaded.located.where(path)
        found.append(Problem(loaded.path, line, col, message, "warning"))
    return found


def _walk(node: Any, at: Path, subject: str, catalog: Catalog) -> Iterator[tuple[Path, str]]:
    """Every event name and field value under `node`, wherever the language allows one."""
    if isinstance(node, _EVENT_NAMED):
        yield from _event(node.name, (*at, "name"), catalog, "")
    if isinstance(node, Goal) and node.event is not None:
        yield from _event(node.event, (*at, "event"), catalog, "goal ")
    if isinstance(node, FieldCondition):
        for name, test in node.root.items():
            yield from _values(name, test, (*at, name), subject, catalog)
        return
    if isinstance(node, RootModel):
        yield from _walk(node.root, at, subject, catalog)
    elif isinstance(node, BaseModel):
        for attr, info in type(node).model_fields.items():
            yield from _walk(getattr(node, attr, None), (*at, info.alias or attr), subject, catalog)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _walk(item, (*at, i), subject, catalog)
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _walk(item, (*at, key), subject, catalog)


def _event(name: str, at: Path, catalog: Catalog, what: str) -> Iterator[tuple[Path, str]]:
    if not catalog.rows.get("events") or catalog.event(name) is not None:
        return
    hint = did_you_mean(name, catalog.event_names())
    if what:
        yield at, f"goal event '{name}' never occurs in the store, so this goal cannot be reached yet{hint}"
    else:
        yield at, f"event '{name}' never occurs in the store{hint}"


def _values(name: str, test: Any, at: Path, subject: Any, catalog: Catalog) -> Iterator[tuple[Path, str]]:
    info = resolve_field(name, subject)
    if info is None or info.key is not None or info.kind != "string":
        return
    known = catalog.values_of(info.table, info.name)
    if not known:
        return
    if isinstance(test, FieldOps):
        tests = [(op, getattr(test, op)) for op in _EQUALITY if op in test.model_fields_set]
    else:
        tests = [("", test)]
    for op, value in tests:
        key = "in" if op == "in_" else op
        where = (*at, key) if key else at
        items = [((*where, i), v) for i, v in enumerate(value)] if isinstance(value, list) else [(where, value)]
        for place, v in items:
            if isinstance(v, str) and v not in known:
                shown = ", ".join(known[:8]) + (", …" if len(known) > 8 else "")
                hint = did_you_mean(v, known)
                yield place, f"'{name}' is never '{v}' in the store (its values: {shown}){hint}"
