"""The fast paths of `touchflow import` store exactly what the row by row path stores, read
files in blocks without losing a line number, and skip a key taken meanwhile."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.ingest import load as load_module
from engine.ingest import parse
from engine.ingest.load import Reject
from engine.store import models
from engine.store.bulk import bulk_insert
from tests.ingest.test_import import ACCOUNTS, CSMS, NOW, count, load, write

CONTACTS = (
    "external_id,account_external_id,email,name,role\n"
    "p1,acme,p1@acme.test,P One,admin\n"
    "p2,globex,p2@globex.test,P Two,user\n"
)
# Times in every form the contract takes: UTC as Z and +00:00, other offsets, naive; cells with
# blanks around them; properties given or not; a contact named or not.
EVENTS = (
    "event_id,account_external_id,contact_external_id,name,occurred_at,properties.feature,properties.n\n"
    "e1,acme,p1,login,2026-11-20T10:00:00Z,,\n"
    "e2, acme ,p1,feature_used,2026-11-20 11:00:00+00:00,sso,3\n"
    "e3,globex,p2,feature_used,2026-11-20T12:30:00.250000+02:00,api,1.5\n"
    "e4,globex,p2,login, 2026-11-21T08:00:00 ,,\n"
    "e5,acme,p1,feature_used,2026-11-21T09:00:00Z,sso,3\n"
)


@pytest.fixture
def people(db: Engine, tmp_path: Path) -> Engine:
    load(db, "csms", write(tmp_path / "csms.csv", CSMS))
    for kind, text in (("accounts", ACCOUNTS), ("contacts", CONTACTS)):
        _, rejects = load(db, kind, write(tmp_path / f"{kind}.csv", text))
        assert rejects == []
    return db


def _stored_events(db: Engine) -> dict[str, tuple[object, ...]]:
    with db.connect() as conn:
        rows = conn.execute(select(models.events).order_by(models.events.c.event_id)).all()
    return {r.event_id: (r.account_id, r.contact_id, r.name, r.occurred_at, r.properties) for r in rows}


def _row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(load_module, "checked_columns", lambda kind, references, raws: None)
    monkeypatch.setattr(load_module, "_all_found", lambda conn, rows, lookups: False)


def test_column_wise_check_stores_what_the_row_check_stores(
    people: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "events.csv", EVENTS)
    fast, rejects = load(people, "events", path)
    assert rejects == [] and fast.inserted == 5
    stored = _stored_events(people)
    assert stored["e3"][3] == datetime(2026, 11, 20, 10, 30, 0, 250000)
    assert stored["e2"][3] == datetime(2026, 11, 20, 11, 0) and stored["e4"][3] == datetime(2026, 11, 21, 8, 0)
    assert stored["e2"][4] == {"feature": "sso", "n": 3} and stored["e3"][4] == {"feature": "api", "n": 1.5}
    assert stored["e1"][4] == {}
    # The same file through the row path: every value equal to what the fast path stored.
    _row_by_row(monkeypatch)
    again, _ = load(people, "events", path)
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 5, 0)
    assert _stored_events(people) == stored


def test_a_chunk_with_one_bad_row_is_checked_row_by_row(people: Engine, tmp_path: Path) -> None:
    bad = EVENTS.replace("2026-11-21T08:00:00", "2026-11-31T08:00:00").replace("e5,acme,p1", "e5,acme,p2")
    path = write(tmp_path / "events.csv", bad)
    summary, rejects = load(people, "events", path, on_error="skip")
    assert [r.format() for r in rejects] == [
        f"{path}:5: column 'occurred_at': '2026-11-31T08:00:00' is not a date and time"
        " (expected ISO 8601, e.g. 2026-11-23T09:00:00Z)",
        f"{path}:6: contact_external_id 'p2' belongs to account 'globex', not 'acme'",
    ]
    assert summary.inserted == 3 and sorted(_stored_events(people)) == ["e1", "e2", "e3"]


def test_events_without_a_contact_column_clear_it(people: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "events.csv", "account_external_id,name,occurred_at\nacme,login,2026-11-20T10:00:00Z\n")
    summary, rejects = load(people, "events", path)
    assert rejects == [] and summary.inserted == 1
    (row,) = _stored_events(people).values()
    assert row[1] is None and row[4] == {}


def test_lines_are_counted_across_blocks(db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "_BLOCK", 7)  # every line split between reads
    text = (
        "\ufeffexternal_id,name,email\n"
        'c1,"Ada\nLovelace",ada@example.com\n'  # one row on lines 2-3
        "c2,Bob,not-an-address\n"
        "\n"
        "c3,Cy,cy@example.com"  # the last line has no newline
    )
    path = write(tmp_path / "csms.csv", text)
    summary, rejects = load(db, "csms", path, on_error="skip")
    assert [r.format() for r in rejects] == [f"{path}:4: column 'email': 'not-an-address' is not an email address"]
    assert summary.inserted == 2
    with db.connect() as conn:
        names = dict(conn.execute(select(models.csms.c.external_id, models.csms.c.name)).tuples().all())
    assert names == {"c1": "Ada\nLovelace", "c3": "Cy"}


# 1,000 good lines first: past the 8 KB at the start where any NUL means "binary file".
_GOOD = b"external_id,name,email\n" + b"c0,A,a@example.com\n" * 1000


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (_GOOD + b"c1,A,a@example.com\nc3,\x00C,c@example.com\n", ":1003: binary data"),
        (_GOOD + "c3,Zoë,z@example.com\n".encode("latin-1"), ":1002: not UTF-8 text (byte 6 of the line)"),
        (_GOOD + b"c2," + b"B" * parse.MAX_LINE + b"\nc3,C\n", ":1002: line is longer than"),
        (_GOOD + b"B" * (2 * parse.MAX_LINE), ":1002: line is longer than"),
    ],
)
def test_a_bad_line_deep_in_a_file_is_named(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, expected: str
) -> None:
    monkeypatch.setattr(parse, "_BLOCK", 4096)
    path = tmp_path / "csms.csv"
    path.write_bytes(content)
    with pytest.raises(parse.FileProblem) as caught:
        load(db, "csms", path)
    assert str(caught.value).startswith(f"{path}{expected}")


def test_jsonl_lines_are_numbered(db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse, "_BLOCK", 3)
    rows = [{"external_id": "c1", "name": "A", "email": "a@example.com"}, [], {"external_id": "c2"}]
    path = write(tmp_path / "csms.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\nnot json\n")
    _, rejects = load(db, "csms", path, on_error="skip")
    assert [(r.line, r.reason.split(":")[0]) for r in rejects] == [
        (2, "a JSON list where an object was expected"),
        (3, "column 'name' is required; column 'email' is required"),
        (5, "not JSON"),
    ]


def test_a_key_stored_meanwhile_is_skipped_not_an_error(db: Engine) -> None:
    if db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL moves staged rows with INSERT … SELECT … ON CONFLICT DO NOTHING")
    columns = ("email", "reason", "detail", "source", "created_at")
    with db.begin() as conn:
        bulk_insert(conn, models.suppressions, columns, [("a@example.com", "bounce", "", "import", NOW)])
        rows = [(f"{n}@example.com", "bounce", "", "import", NOW) for n in "abc"]
        inserted = bulk_insert(conn, models.suppressions, columns, rows, skip_conflicts_on="email")
    assert inserted == 2 and count(db, models.suppressions) == 3


def test_rejects_keep_the_raw_row(db: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "csms.csv", "external_id,name,email\nc1,A,a@example\n")
    rejects: list[Reject] = []
    summary, rejects = load(db, "csms", path)
    assert rejects[0].row == {"external_id": "c1", "name": "A", "email": "a@example"}
    assert not summary.written
