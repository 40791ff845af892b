"""The data catalogue as data: what the store holds, and its snapshot file `catalog.json`.

`touchflow catalog` profiles the store (`engine/catalog/profile.py`); `touchflow catalog --write`
saves the result beside `touchflow.yaml`, meant for git, so `validate` and the JSON Schema can use
it without a database. This module only holds the shapes and reads and writes the file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SNAPSHOT_NAME = "catalog.json"
"""The snapshot's file name, in the project directory."""
SNAPSHOT_FORMAT = 1


class CatalogError(ValueError):
    """A snapshot file that cannot be used: what is wrong with it, in words."""


@dataclass(frozen=True)
class FieldProfile:
    """A column of accounts or contacts."""

    table: str
    """`account` or `contact`."""
    name: str
    kind: str
    """As in the field catalogue: string, number, date, datetime, boolean, json."""
    filled: float
    """Share of rows with a value (0 to 1)."""
    values: tuple[str, ...] | None = None
    """Every distinct value, when there are few (a status, a tier); None otherwise."""


@dataclass(frozen=True)
class TraitProfile:
    """A key of the traits JSON of accounts or contacts, from a sample of rows."""

    table: str
    key: str
    kind: str
    """Inferred from the sampled values: text, number, boolean, date, datetime, list, object, or
    several joined by ' | ' when rows disagree."""
    share: float
    """Share of sampled rows that have the key."""
    examples: tuple[str, ...] = ()


@dataclass(frozen=True)
class EventProfile:
    """An event name, how often and how recently it occurs, and its property keys (sampled)."""

    name: str
    count: int
    last_seen: str | None
    properties: tuple[str, ...] = ()


@dataclass(frozen=True)
class Catalog:
    """What the customer store holds, as far as playbook authors need to know."""

    rows: dict[str, int]
    """Row counts: accounts, contacts, events."""
    sample: int
    """How many rows per table (and per event name) the traits and property keys come from."""
    fields: tuple[FieldProfile, ...] = ()
    traits: tuple[TraitProfile, ...] = ()
    events: tuple[EventProfile, ...] = ()
    notes: tuple[str, ...] = field(default=())
    """What could not be read (rows that are not JSON, text that is not UTF-8), in words."""

    def event_names(self) -> list[str]:
        """Every event name the store has seen, sorted."""
        return sorted(e.name for e in self.events)

    def event(self, name: str) -> EventProfile | None:
        """The profile of event `name`, or None when the store has never seen it."""
        return next((e for e in self.events if e.name == name), None)

    def values_of(self, table: str, name: str) -> tuple[str, ...] | None:
        """The distinct values of a low-cardinality column, or None when not known."""
        found = next((f for f in self.fields if f.table == table and f.name == name), None)
        return None if found is None else found.values

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the snapshot file's content and `touchflow catalog --format json`."""
        return {"format": SNAPSHOT_FORMAT, **asdict(self)}


def snapshot_text(catalog: Catalog) -> str:
    """The snapshot file: stable key order and indentation, so a diff in git reads well."""
    return json.dumps(catalog.as_dict(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def catalog_from_dict(data: Any) -> Catalog:
    """The Catalog of a parsed snapshot. Raises CatalogError naming what is wrong."""
    if not isinstance(data, dict):
        raise CatalogError("not a JSON object")
    if data.get("format") != SNAPSHOT_FORMAT:
        raise CatalogError(f"format {data.get('format')!r} is not {SNAPSHOT_FORMAT}: run `touchflow catalog --write`")
    try:
        return Catalog(
            rows={str(k): int(v) for k, v in data["rows"].items()},
            sample=int(data["sample"]),
            fields=tuple(
                FieldProfile(
                    str(f["table"]),
                    str(f["name"]),
                    str(f["kind"]),
                    float(f["filled"]),
                    None if f.get("values") is None else tuple(str(v) for v in f["values"]),
                )
                for f in data["fields"]
            ),
            traits=tuple(
                TraitProfile(
                    str(t["table"]),
                    str(t["key"]),
                    str(t["kind"]),
                    float(t["share"]),
                    tuple(str(x) for x in t.get("examples", ())),
                )
                for t in data["traits"]
            ),
            events=tuple(
                EventProfile(
                    str(e["name"]),
                    int(e["count"]),
                    None if e.get("last_seen") is None else str(e["last_seen"]),
                    tuple(str(p) for p in e.get("properties", ())),
                )
                for e in data["events"]
            ),
            notes=tuple(str(n) for n in data.get("notes", ())),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CatalogError(f"not a catalogue snapshot ({type(exc).__name__}: {exc})") from None


def read_snapshot(path: Path) -> Catalog:
    """The snapshot at `path`. Raises CatalogError (unreadable, not JSON, not a snapshot)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return catalog_from_dict(data)
