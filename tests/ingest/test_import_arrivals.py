"""`touchflow import` beyond the rows themselves: what arrived is recorded for the freshness
guardrail, an event's contact must belong to its account, a required column missing from a
file's header is said once, and the command line stays quiet when not on a terminal."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from engine.ingest.parse import FileProblem
from engine.store import models
from tests.ingest.test_import import CSMS, NOW, accounts_loaded, cli, count, invoke, load, write

__all__ = ["accounts_loaded", "cli"]  # fixtures used here

CONTACTS = (
    "external_id,account_external_id,email,name,role\n"
    "p1,acme,p1@acme.test,P One,admin\n"
    "g1,globex,g1@globex.test,G One,admin\n"
)


def sources(db: Engine) -> dict[str, tuple[datetime | None, int]]:
    with db.connect() as conn:
        return {r.source: (r.last_data_at, r.arrivals) for r in conn.execute(select(models.data_sources))}


def test_an_import_records_what_arrived_per_table_and_per_event_name(accounts_loaded: Engine, tmp_path: Path) -> None:
    load(accounts_loaded, "contacts", write(tmp_path / "contacts.csv", CONTACTS))
    events = write(
        tmp_path / "events.csv",
        "event_id,account_external_id,contact_external_id,name,occurred_at\n"
        "e1,acme,p1,login,2026-11-20T10:00:00Z\n"
        "e2,acme,,login,2026-11-22T08:30:00Z\n"
        "e3,globex,g1,nps_submitted,2026-11-01T00:00:00Z\n",
    )
    summary, rejects = load(accounts_loaded, "events", events)
    assert rejects == [] and summary.inserted == 3
    seen = sources(accounts_loaded)
    assert seen["event:login"] == (datetime(2026, 11, 22, 8, 30), 2)
    assert seen["event:nps_submitted"] == (datetime(2026, 11, 1), 1)
    assert seen["csms"][1] == 1 and seen["accounts"][1] == 2 and seen["contacts"][1] == 2
    with accounts_loaded.connect() as conn:
        arrived = conn.execute(select(models.data_sources.c.last_arrived_at)).scalars().all()
    # Tables: their data is as new as its arrival (the wall clock, naive UTC).
    assert all(a is not None and a.tzinfo is None and a > NOW.replace(year=2025) for a in arrived)
    assert seen["accounts"][0] is not None and seen["accounts"][0].tzinfo is None


def test_a_dry_run_or_a_stopped_import_records_nothing(accounts_loaded: Engine, tmp_path: Path) -> None:
    before = sources(accounts_loaded)
    events = write(
        tmp_path / "events.csv",
        "account_external_id,name,occurred_at\nacme,login,2026-11-20T10:00:00Z\nnobody,login,2026-11-20T10:00:00Z\n",
    )
    load(accounts_loaded, "events", events, dry_run=True, on_error="skip")
    load(accounts_loaded, "events", events)  # stopped by the bad row
    assert sources(accounts_loaded) == before


def test_an_event_whose_contact_belongs_to_another_account_is_rejected(accounts_loaded: Engine, tmp_path: Path) -> None:
    load(accounts_loaded, "contacts", write(tmp_path / "contacts.csv", CONTACTS))
    events = write(
        tmp_path / "events.csv",
        "event_id,account_external_id,contact_external_id,name,occurred_at\n"
        "e1,acme,p1,login,2026-11-20T10:00:00Z\n"
        "e2,acme,g1,login,2026-11-20T10:00:00Z\n",
    )
    summary, rejects = load(accounts_loaded, "events", events, on_error="skip")
    assert summary.inserted == 1 and [r.line for r in rejects] == [3]
    assert rejects[0].reason == "contact_external_id 'g1' belongs to account 'globex', not 'acme'"
    assert count(accounts_loaded, models.events) == 1


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_required_column_missing_from_the_header_is_said_once(db: Engine, tmp_path: Path, on_error: str) -> None:
    rows = "".join(f"acme,login,2026-11-20T10:00:0{i}Z\n" for i in range(5))
    path = write(tmp_path / "events.csv", "account_external_id,name,occured_at\n" + rows)
    with pytest.raises(FileProblem) as caught:
        load(db, "events", path, on_error=on_error)
    assert str(caught.value) == (
        f"{path}:1: required column 'occurred_at' is missing from the header (is 'occured_at' a misspelling?)"
    )
    assert count(db, models.events) == 0


def test_cli_missing_column_is_one_line_and_no_progress_noise(cli: Path) -> None:
    path = write(cli / "csms.csv", "external_id,name\n" + "".join(f"c{i},N{i}\n" for i in range(50)))
    result = invoke("import", "csms", str(path))
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"{path}:1: required column 'email' is missing from the header; nothing imported"
    ]
    ok = invoke("import", "csms", str(write(cli / "ok.csv", CSMS)))
    assert ok.exit_code == 0
    # Not a terminal: the summary line and nothing else (no bar, no control characters).
    assert ok.stderr == ""
    assert ok.stdout.splitlines() == [ok.stdout.strip()] and ok.stdout.startswith("csms: 1 inserted")
    assert "\x1b" not in ok.output and "\r" not in ok.output


def test_progress_is_reported_per_chunk(
    accounts_loaded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.ingest.load.CHUNK", 4)
    lines = [
        json.dumps({"event_id": f"e{i}", "account_external_id": "acme", "name": "login", "occurred_at": "2026-11-01"})
        for i in range(10)
    ]
    path = write(tmp_path / "events.jsonl", "\n".join(lines) + "\n")
    heard: list[tuple[int, int]] = []
    load(accounts_loaded, "events", path, on_progress=lambda rows, done: heard.append((rows, done)))
    assert [rows for rows, _ in heard] == [4, 8, 10]
    assert heard[-1][1] == path.stat().st_size


def test_staged_rows_move_in_batches_and_across_files(
    accounts_loaded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.ingest.load.CHUNK", 4)
    monkeypatch.setattr("engine.ingest.tables._STAGED", 6)
    rows = [
        json.dumps({"event_id": f"e{i}", "account_external_id": "acme", "name": "login", "occurred_at": "2026-11-01"})
        for i in range(23)
    ]
    first = write(tmp_path / "a.jsonl", "\n".join(rows) + "\n")
    # The second file names some of the first's keys again, one of them changed.
    second = write(tmp_path / "b.jsonl", "\n".join([rows[0], rows[1].replace("login", "logout"), rows[22]]) + "\n")
    summary, rejects = load(accounts_loaded, "events", first, second)
    assert rejects == []
    assert (summary.inserted, summary.updated, summary.unchanged) == (23, 1, 2)
    assert count(accounts_loaded, models.events) == 23
    again, _ = load(accounts_loaded, "events", first)
    assert (again.inserted, again.updated, again.unchanged) == (0, 1, 22)
