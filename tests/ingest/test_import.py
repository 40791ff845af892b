"""`touchflow import`: files of customer data upserted on the customer's own ids, on SQLite and
PostgreSQL; bad rows named by FILE:LINE, and either nothing written (stop) or only they left out
(skip)."""

from __future__ import annotations

import gzip
import json
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.ingest.contract import CONTRACT
from engine.ingest.load import Reject, Summary, import_files
from engine.ingest.parse import FileProblem
from engine.store import models
from tests.conftest import REPO

NOW = datetime(2026, 12, 5, 9, 0)
CSMS = "external_id,name,email,team\ncsm-1,Ada Lovelace,ada@example.com,emea\n"
ACCOUNTS = (
    "external_id,name,tier,plan,arr,seats_purchased,lifecycle_stage,contract_start,renewal_date,"
    "csm_external_id,timezone,locale,traits.industry,traits.employees\n"
    "acme,Acme,tech_touch,pro,12000,25,adopting,2025-01-01,2026-12-31,csm-1,Europe/Paris,fr,retail,120\n"
    "globex,Globex,low_touch,team,4800.5,10,onboarding,2025-06-01,2026-06-01,,America/New_York,en,,\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def load(db: Engine, kind: str, *paths: Path, **options: Any) -> tuple[Summary, list[Reject]]:
    rejects: list[Reject] = []
    summary = import_files(db, kind, list(paths), on_reject=rejects.append, now=NOW, **options)
    return summary, rejects


def count(db: Engine, table: object) -> int:
    with db.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


@pytest.fixture
def accounts_loaded(db: Engine, tmp_path: Path) -> Engine:
    load(db, "csms", write(tmp_path / "csms.csv", CSMS))
    _, rejects = load(db, "accounts", write(tmp_path / "accounts.csv", ACCOUNTS))
    assert rejects == []
    return db


def test_accounts_import_typed_and_keyed(accounts_loaded: Engine) -> None:
    with accounts_loaded.connect() as conn:
        rows = {r.external_id: r for r in conn.execute(select(models.accounts))}
        csm_id = conn.execute(select(models.csms.c.id).where(models.csms.c.external_id == "csm-1")).scalar_one()
    assert rows["acme"].renewal_date == date(2026, 12, 31)
    assert rows["acme"].arr == 12000.0 and rows["acme"].seats_purchased == 25
    assert rows["acme"].csm_id == csm_id and rows["globex"].csm_id is None
    assert rows["acme"].traits == {"industry": "retail", "employees": 120}
    assert rows["globex"].traits == {} and rows["globex"].status == "active"


def test_same_file_twice_changes_nothing_and_a_corrected_file_updates(accounts_loaded: Engine, tmp_path: Path) -> None:
    again, _ = load(accounts_loaded, "accounts", tmp_path / "accounts.csv")
    assert (again.inserted, again.updated, again.unchanged, again.rejected) == (0, 0, 2, 0)
    fixed = write(tmp_path / "fixed.csv", ACCOUNTS.replace("4800.5", "5000"))
    summary, _ = load(accounts_loaded, "accounts", fixed)
    assert (summary.inserted, summary.updated, summary.unchanged) == (0, 1, 1)
    assert count(accounts_loaded, models.accounts) == 2
    with accounts_loaded.connect() as conn:
        arr = conn.execute(select(models.accounts.c.arr).where(models.accounts.c.external_id == "globex")).scalar_one()
    assert arr == 5000.0


def test_bad_values_are_named_by_file_line_and_column(db: Engine, tmp_path: Path) -> None:
    bad = ACCOUNTS.replace("2026-12-31", "2026-13-01").replace("America/New_York", "America/New_Yrok")
    path = write(tmp_path / "accounts.csv", bad.replace("csm-1", ""))
    summary, rejects = load(db, "accounts", path)
    messages = [r.format() for r in rejects]
    assert messages[0] == f"{path}:2: column 'renewal_date': '2026-13-01' is not a date (expected YYYY-MM-DD)"
    assert messages[1].startswith(f"{path}:3: column 'timezone': 'America/New_Yrok' is not a time zone")
    assert "did you mean 'America/New_York'" in messages[1]
    assert summary.rejected == 2 and not summary.written
    assert count(db, models.accounts) == 0


def test_stop_writes_nothing_and_skip_writes_the_good_rows(db: Engine, tmp_path: Path) -> None:
    text = ACCOUNTS.replace("csm-1", "").replace("12000", "lots")
    path = write(tmp_path / "accounts.csv", text)
    load(db, "accounts", path)
    assert count(db, models.accounts) == 0
    summary, rejects = load(db, "accounts", path, on_error="skip")
    assert summary.inserted == 1 and summary.rejected == 1
    assert rejects[0].reason == "column 'arr': 'lots' is not a number"
    assert count(db, models.accounts) == 1


def test_unknown_column_duplicate_key_and_bad_email(db: Engine, tmp_path: Path) -> None:
    # JSON lines have no header: an unknown member is said on its row (a CSV header: tests below).
    path = write(tmp_path / "csms.jsonl", '{"external_id": "c1", "name": "A", "emial": "a@example.com"}\n')
    _, rejects = load(db, "csms", path)
    assert "unknown column 'emial' (did you mean 'email'?)" in rejects[0].reason
    path = write(
        tmp_path / "csms2.csv", "external_id,name,email\nc1,A,a@example.com\nc1,B,not-an-address\nc1,C,c@example.com\n"
    )
    _, rejects = load(db, "csms", path)
    assert [r.line for r in rejects] == [3, 4]
    assert rejects[0].reason == "column 'email': 'not-an-address' is not an email address"
    assert rejects[1].reason == "duplicate external_id 'c1' (first on line 2)"


def test_contact_of_an_unknown_account_is_rejected(accounts_loaded: Engine, tmp_path: Path) -> None:
    path = tmp_path / "contacts.jsonl"
    rows = [
        {
            "external_id": "p1",
            "account_external_id": "acme",
            "email": "p1@acme.test",
            "name": "P",
            "role": "admin",
            "traits": {"vip": True},
        },
        {"external_id": "p2", "account_external_id": "initech", "email": "p2@x.test", "name": "Q", "role": "user"},
    ]
    write(path, "".join(json.dumps(r) + "\n" for r in rows))
    summary, rejects = load(accounts_loaded, "contacts", path, on_error="skip")
    assert summary.inserted == 1
    assert (
        rejects[0].format()
        == f"{path}:2: account_external_id 'initech': no such account in the store or earlier in this import"
    )
    with accounts_loaded.connect() as conn:
        contact = conn.execute(select(models.contacts)).one()
    assert contact.traits == {"vip": True} and contact.external_id == "p1"


def test_events_without_ids_import_idempotently_from_gzip(accounts_loaded: Engine, tmp_path: Path) -> None:
    path = tmp_path / "events.csv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("account_external_id,name,occurred_at,properties.feature\n")
        f.write("acme,login,2026-11-20T10:00:00Z,\nacme,feature_used,2026-11-20T11:00:00+01:00,sso\n")
    first, _ = load(accounts_loaded, "events", path)
    second, _ = load(accounts_loaded, "events", path)
    assert (first.inserted, second.inserted, second.unchanged) == (2, 0, 2)
    with accounts_loaded.connect() as conn:
        used = conn.execute(select(models.events).where(models.events.c.name == "feature_used")).one()
    assert used.occurred_at == datetime(2026, 11, 20, 10, 0) and used.properties == {"feature": "sso"}
    assert used.event_id.startswith("sha256:")


def test_suppressions_keyed_by_address(db: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "s.csv", "email,reason\nBob@Example.com,bounce\n")
    load(db, "suppressions", path)
    summary, _ = load(db, "suppressions", write(tmp_path / "t.csv", "email,reason\nbob@example.com,unsubscribe\n"))
    assert summary.updated == 1
    with db.connect() as conn:
        row = conn.execute(select(models.suppressions)).one()
    assert (row.email, row.reason, row.source, row.created_at) == ("bob@example.com", "unsubscribe", "import", NOW)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("binary.csv", b"external_id,name\n\x00\x01\x02", ":1: binary data"),
        ("latin.csv", "external_id,name,email\nc1,Zoë,z@example.com\n".encode("latin-1"), ":2: not UTF-8 text"),
        ("rows.csv", b'{"external_id": "c1"}\n', ":1: this looks like JSON lines, not CSV"),
        ("huge.jsonl", b"{" + b" " * (1 << 21) + b"}\n", ":1: line is longer than"),
        ("broken.csv.gz", b"\x1f\x8b\x08\x00garbage", "cannot read"),
    ],
)
def test_unreadable_files_are_a_message_and_write_nothing(
    db: Engine, tmp_path: Path, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(FileProblem) as caught:
        load(db, "csms", path)
    assert str(caught.value).startswith(str(path)) and expected in str(caught.value)
    assert count(db, models.csms) == 0


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("COLUMNS", "250")
    return tmp_path


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_cli_json_summary_and_rejects_file(cli: Path) -> None:
    invoke("import", "csms", str(write(cli / "csms.csv", CSMS)))
    bad = ACCOUNTS.replace("tech_touch", "tech-touch")
    rejects = cli / "rejects.csv"
    result = invoke(
        "import", "accounts", str(write(cli / "a.csv", bad)), "--on-error", "skip", "--rejects", str(rejects), "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("inserted", "updated", "unchanged", "rejected")} == {
        "inserted": 1,
        "updated": 0,
        "unchanged": 0,
        "rejected": 1,
    }
    assert summary["seconds"] >= 0
    assert (
        "'tech-touch' is not one of high_touch, low_touch, tech_touch (did you mean 'tech_touch'?)"
        in rejects.read_text()
    )
    # The rejects file, fixed, imports as it is (its _reason column is ignored).
    write(rejects, rejects.read_text().replace("tech-touch", "tech_touch"))
    again = invoke("import", "accounts", str(rejects), "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["inserted"] == 1


def test_cli_stop_exits_1_naming_the_row_and_dry_run_writes_nothing(cli: Path) -> None:
    path = write(cli / "csms.csv", CSMS + "csm-2,Bo,bo@,x\n")
    result = invoke("import", "csms", str(path))
    assert result.exit_code == 1
    assert f"{path}:3: column 'email': 'bo@' is not an email address" in result.stderr
    assert "nothing written: 0 inserted" in result.stdout
    dry = invoke("import", "csms", str(write(cli / "ok.csv", CSMS)), "--dry-run")
    assert dry.exit_code == 0 and "would be 1 inserted" in dry.stdout
    assert json.loads(invoke("import", "csms", str(cli / "ok.csv"), "--json").stdout)["inserted"] == 1


def test_cli_unreadable_file_is_one_line_without_traceback(cli: Path) -> None:
    path = cli / "x.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    result = invoke("import", "events", str(path))
    assert result.exit_code == 1
    assert "Traceback" not in result.output and "binary data" in result.stderr
    missing = invoke("import", "events", str(cli / "missing.csv"))
    assert missing.exit_code == 1 and "cannot open" in missing.stderr
    kind = invoke("import", "acounts", str(path))
    assert kind.exit_code == 2 and "did you mean 'accounts'" in kind.output


def test_docs_name_every_column_of_the_contract() -> None:
    text = (REPO / "docs" / "data.md").read_text(encoding="utf-8")
    for kind in CONTRACT.values():
        assert f"## {kind.name}" in text
        for column in kind.columns:
            assert f"`{column.name}`" in text, (kind.name, column.name)


def test_chunks_stream_and_duplicates_are_seen_across_chunks(
    accounts_loaded: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.ingest.load.CHUNK", 7)
    lines = [
        json.dumps(
            {"event_id": f"e{i}", "account_external_id": "acme", "name": "login", "occurred_at": "2026-11-01T00:00:00"}
        )
        for i in range(30)
    ]
    lines.append(lines[3])  # a duplicate key several chunks later
    write(tmp_path / "events.jsonl", "\n".join(lines) + "\n")
    summary, rejects = load(accounts_loaded, "events", tmp_path / "events.jsonl", on_error="skip")
    assert (summary.inserted, summary.rejected) == (30, 1)
    assert rejects[0].line == 31 and rejects[0].reason == "duplicate event_id 'e3' (first on line 4)"
    assert count(accounts_loaded, models.events) == 30
