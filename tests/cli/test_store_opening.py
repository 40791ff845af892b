"""Opening the store: a path or database that holds no store is an error naming it and saying how
to create one (a typo in a SQLite path used to create an empty store a tick then "succeeded" on),
except for the commands that create stores (`migrate`, `demo-data`, `import`); a misspelt URL
scheme gets a did-you-mean."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.store.db import DatabaseURLError, connect, parse_url
from tests.conftest import PG_URL, REPO, _pg_or_skip

NOW = "2026-11-24T09:00"


def one_line(text_: str) -> str:
    return " ".join(text_.split())


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The repo's playbooks and templates in tmp_path; the project dir and cwd."""
    import shutil

    proj = tmp_path / "proj"
    for part in ("playbooks", "templates"):
        shutil.copytree(REPO / part, proj / part)
    shutil.copy(REPO / "touchflow.yaml", proj / "touchflow.yaml")
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj))
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(proj / "outbox"))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect-home"))
    monkeypatch.chdir(proj)
    return proj


READERS = [
    ["run", "--now", NOW],
    ["run", "--now", NOW, "--dry-run"],
    ["audit"],
    ["experiments"],
    ["demo-engagement", "--now", NOW],
    ["simulate", "--from", "2026-11-01", "--to", "2026-11-02"],
    ["preview", "welcome"],
]


@pytest.mark.parametrize("command", READERS, ids=lambda c: "-".join(c[:2]))
def test_a_missing_sqlite_store_is_an_error(root: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]) -> None:
    typo = root / "touchflwo.db"
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", f"sqlite:///{typo}")
    result = invoke(*command)
    assert result.exit_code == 1, result.output
    message = one_line(result.stderr)
    assert f"no store at {typo}" in message, message
    assert "touchflow migrate" in message and "touchflow demo-data" in message
    assert not typo.exists()  # nothing was created on the way


def test_an_empty_sqlite_file_is_no_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = root / "empty.db"
    empty.touch()
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", f"sqlite:///{empty}")
    result = invoke("audit")
    assert result.exit_code == 1, result.output
    assert "has no Touchflow tables" in one_line(result.stderr) and "touchflow migrate" in one_line(result.stderr)


@pytest.mark.parametrize("command", [["migrate"], ["demo-data", "--accounts", "3", "--now", NOW]], ids=lambda c: c[0])
def test_the_commands_that_create_stores_still_do(
    root: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    fresh = root / "fresh.db"
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", f"sqlite:///{fresh}")
    result = invoke(*command)
    assert result.exit_code == 0, result.output
    assert fresh.exists()
    audit = invoke("audit", "--format", "json")  # and the store then opens
    assert audit.exit_code == 0, audit.output


def test_import_creates_a_store(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = root / "imported.db"
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", f"sqlite:///{fresh}")
    people = root / "csms.csv"
    people.write_text("external_id,name,email\ncsm-1,Mina Park,mina@touchflow.example\n")
    result = invoke("import", "csms", str(people))
    assert result.exit_code == 0, result.output
    assert fresh.exists()


@pytest.fixture
def empty_pg_schema() -> Iterator[str]:
    """A URL whose search_path is a new, empty schema (never migrated)."""
    base = _pg_or_skip()
    schema = f"empty_{uuid.uuid4().hex[:12]}"
    admin = connect(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base else "?"
    try:
        yield f"{base}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.mark.skipif(not PG_URL and os.environ.get("TOUCHFLOW_REQUIRE_PG") != "1", reason="PostgreSQL not set")
def test_an_empty_postgresql_database_is_no_store(
    root: Path, monkeypatch: pytest.MonkeyPatch, empty_pg_schema: str
) -> None:
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", empty_pg_schema)
    result = invoke("audit")
    assert result.exit_code == 1, result.output
    assert "has no Touchflow tables" in one_line(result.stderr)
    created = invoke("migrate")
    assert created.exit_code == 0, created.output
    assert invoke("audit").exit_code == 0


# --- misspelt schemes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "meant"),
    [
        ("postgress://ops:s3cret@db.example/crm", "postgresql"),
        ("postgres+psycopg://ops:s3cret@db/crm", "postgresql+psycopg"),
        ("sqllite:///touchflow.db", "sqlite"),
        ("sqlite3:///touchflow.db", "sqlite"),
    ],
)
def test_a_misspelt_scheme_gets_a_did_you_mean(
    root: Path, monkeypatch: pytest.MonkeyPatch, url: str, meant: str
) -> None:
    with pytest.raises(DatabaseURLError) as caught:
        parse_url(url)
    assert f"did you mean '{meant}'" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", url)
    result = invoke("audit")
    assert result.exit_code == 1, result.output
    assert f"did you mean '{meant}'" in one_line(result.stderr) and "s3cret" not in result.output
