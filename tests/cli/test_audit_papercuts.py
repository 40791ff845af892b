"""`touchflow audit` as an operator types it: a contact by id, email or external id; `--since`
as `7d`, `today`, `yesterday` or `last-week`; a playbook id that does not exist is an error listing
the ids there are; `--summary` counts people (distinct contacts and accounts) beside decisions.

Each test runs on SQLite and PostgreSQL (the `db` / `db_url` fixtures)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from engine.audit import Decision, Reason, audit_row, record
from engine.audit_report import parse_moment
from engine.cli import app
from tests.factories import Store

DAY = timedelta(days=1)


def one_line(text: str) -> str:
    return " ".join(text.split())


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, ["audit", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def send_keys(*args: str) -> list[str]:
    result = run("--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [str(json.loads(line)["send_key"]) for line in result.stdout.splitlines()]


class Seeded:
    """Contacts Mina (two decisions) and Joon (one), account-level decisions on a second account."""

    def __init__(self, db: Engine) -> None:
        now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
        self.now = now
        store = Store(db, now)
        self.account = store.account(name="Evergreen Bio")
        self.other = store.account(name="Bluefin")
        self.mina = store.contact(self.account, email="Mina.Park@Evergreen.example", external_id="crm-0042")
        self.joon = store.contact(self.other, email="joon@bluefin.example", external_id="900077")
        specs = [
            ("welcome", self.account, self.mina, Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY, 3 * DAY, "k1"),
            ("welcome", self.account, self.mina, Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY, 2 * DAY, "k2"),
            ("welcome", self.other, self.joon, Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY, 2 * DAY, "k3"),
            ("welcome", self.account, self.mina, Decision.SENT, Reason.DELIVERED_TO_CHANNEL, 20 * DAY, "k4"),
            ("renewal", self.other, None, Decision.TASK_OPENED, Reason.TASK_CREATED, 40 * DAY, "k5"),
            ("renewal", self.other, None, Decision.TASK_OPENED, Reason.TASK_CREATED, 10 * DAY, "k6"),
        ]
        self.at = {key: now - age for *_, age, key in specs}
        rows = [
            audit_row(
                at=now - age,
                run_id="seed",
                playbook_id=pid,
                playbook_version="v1",
                decision=decision,
                reason=reason,
                detail="d",
                step_id="s",
                account_id=account,
                contact_id=contact,
                channel="email",
                send_key=key,
            )
            for pid, account, contact, decision, reason, age, key in specs
        ]
        with db.begin() as conn:
            record(conn, rows)


@pytest.fixture
def seeded(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    return Seeded(db)


# --- --contact ------------------------------------------------------------------------------------


def test_a_contact_by_id_email_or_external_id(seeded: Seeded) -> None:
    mina = ["k4", "k1", "k2"]
    assert send_keys("--contact", str(seeded.mina)) == mina
    assert send_keys("--contact", "mina.park@evergreen.EXAMPLE") == mina  # any case
    assert send_keys("--contact", "crm-0042") == mina
    assert send_keys("--contact", "900077") == ["k3"]  # digits that are no contact's id: the external id


def test_an_unknown_contact_is_an_error(seeded: Seeded) -> None:
    for value in ("nobody@nowhere.example", "crm-9999", "987654321"):
        result = run("--contact", value)
        assert result.exit_code == 2, (value, result.output)
        assert f"no contact '{value}'" in one_line(result.stderr)
        assert "id, email or external id" in one_line(result.stderr)
        assert result.stdout == ""


# --- --since / --until ----------------------------------------------------------------------------


def test_relative_moments() -> None:
    now = datetime(2026, 11, 26, 15, 30)  # a Thursday
    assert parse_moment("today", now) == datetime(2026, 11, 26)
    assert parse_moment("yesterday", now) == datetime(2026, 11, 25)
    assert parse_moment("last-week", now) == datetime(2026, 11, 16)  # the previous ISO week's Monday
    assert parse_moment("last-week", datetime(2026, 11, 23)) == datetime(2026, 11, 16)  # on a Monday
    assert parse_moment("7d", now) == datetime(2026, 11, 19, 15, 30)
    assert parse_moment("24h", now) == datetime(2026, 11, 25, 15, 30)
    assert parse_moment("2w", now) == datetime(2026, 11, 12, 15, 30)
    assert parse_moment("2026-11-23", now) == datetime(2026, 11, 23)


@pytest.mark.parametrize("value", ["last week", "tomorrow", "3 days", "2026-13-45", "7x"])
def test_a_moment_that_is_no_form_lists_the_forms(value: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_moment(value, datetime(2026, 11, 26))
    message = str(caught.value)
    assert f"'{value}'" in message
    for form in ("2026-11-23", "7d", "24h", "2w", "today", "yesterday", "last-week"):
        assert form in message, message


def test_since_yesterday_and_last_week_on_the_command_line(seeded: Seeded) -> None:
    assert send_keys("--since", "yesterday", "--playbook", "welcome") == []
    midnight = seeded.now.replace(hour=0, minute=0, second=0)
    expected = [k for k in ("k5", "k4", "k6", "k1", "k2", "k3") if seeded.at[k] >= midnight - DAY]
    assert send_keys("--since", "yesterday") == expected
    monday = midnight - timedelta(days=midnight.weekday() + 7)
    expected = [k for k in ("k5", "k4", "k6", "k1", "k2", "k3") if seeded.at[k] >= monday]
    assert send_keys("--since", "last-week") == expected
    bad = run("--since", "last week")
    assert bad.exit_code == 2 and "last-week" in one_line(bad.stderr)


# --- unknown playbooks ----------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [(), ("--summary",), ("--format", "json"), ("--format", "csv")])
def test_an_unknown_playbook_is_an_error_listing_the_known_ones(seeded: Seeded, extra: tuple[str, ...]) -> None:
    result = run("--playbook", "welcom", *extra)
    assert result.exit_code == 2, result.output
    message = one_line(result.stderr)
    assert "no playbook 'welcom'" in message and "did you mean 'welcome'" in message
    assert "renewal" in message and "welcome" in message
    assert result.stdout == ""


def test_a_playbook_of_the_project_without_decisions_is_no_error(seeded: Seeded, tmp_path: Path) -> None:
    (tmp_path / "playbooks").mkdir()
    (tmp_path / "playbooks" / "quiet.yaml").write_text(
        "id: quiet\nname: Quiet\ntrigger:\n  event: {name: contact_left}\nsteps:\n  - task: {title: Call}\n"
    )
    result = run("--playbook", "quiet", "--format", "json")
    assert (result.exit_code, result.stdout) == (0, ""), result.output


# --- --summary in people --------------------------------------------------------------------------


def test_the_summary_counts_people_per_playbook_and_reason(seeded: Seeded) -> None:
    result = run("--summary", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    by_key = {(r["playbook"], r["decision"], r["reason"]): r for r in rows}
    assert by_key[("welcome", "deferred", "capped_contact_daily")] == {
        "playbook": "welcome",
        "decision": "deferred",
        "reason": "capped_contact_daily",
        "decisions": 3,
        "contacts": 2,
        "accounts": 2,
    }
    assert by_key[("renewal", "task_opened", "task_created")]["decisions"] == 2
    assert by_key[("renewal", "task_opened", "task_created")]["contacts"] == 0
    assert by_key[("renewal", "task_opened", "task_created")]["accounts"] == 1
    assert len(rows) == 3
    table = run("--summary")
    assert table.exit_code == 0, table.output
    words = table.stdout.split()
    assert "welcome" in words and "capped_contact_daily" in words and "contacts" in table.stdout
