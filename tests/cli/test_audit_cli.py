"""`touchflow audit` on SQLite and PostgreSQL: every filter, `--limit`, `--summary`, the three formats,
and a clean exit 2 (no traceback) on a bad `--format` or an unparseable `--since`/`--until`.

The audit rows are written with `engine.audit.record` at times relative to the real clock (the
command resolves `7d` against it), truncated to whole seconds (the report's precision).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from engine.audit import Decision, Reason, audit_row, record
from engine.audit_report import FIELDS
from engine.cli import app

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
SEOUL = timezone(timedelta(hours=9))
TRICKY = 'welcome/hello to "Mina", Park\nsecond line — 함께한 1년'


@dataclass(frozen=True)
class Seeded:
    """The audit rows written, by name, each with its `at` (naive UTC)."""

    now: datetime
    at: dict[str, datetime]


class Spec(NamedTuple):
    age: timedelta
    playbook: str
    step: str | None
    account_id: int
    contact_id: int | None
    channel: str | None
    decision: Decision
    reason: Reason
    detail: str
    variant: str | None
    send_key: str | None


CAP_DETAIL = "1 email to contact {} in the last 24 hours, cap 1"
ROWS = {
    "sent": Spec(
        30 * DAY, "welcome", "hello", 1, 11, "email", Decision.SENT, Reason.DELIVERED_TO_CHANNEL, TRICKY, "a", "k-sent"
    ),
    "task": Spec(
        10 * DAY, "renewal", "call", 2, None, "task", Decision.TASK_OPENED, Reason.TASK_CREATED,
        "high task", None, "k-task",
    ),
    "capped": Spec(
        3 * DAY, "welcome", "hello", 1, 12, "email", Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY,
        CAP_DETAIL.format(12), "b", "k-capped",
    ),
    "capped2": Spec(
        2 * DAY + HOUR, "welcome", "hello", 3, 13, "email", Decision.DEFERRED, Reason.CAPPED_CONTACT_DAILY,
        CAP_DETAIL.format(13), None, "k-capped2",
    ),
    "enrolled": Spec(
        2 * DAY, "welcome", None, 3, None, None, Decision.ENROLLED, Reason.TRIGGER_MATCHED,
        "plan is starter", None, None,
    ),
    "skipped": Spec(
        HOUR, "renewal", "call", 2, None, "task", Decision.SKIPPED, Reason.SUPPRESSED_DO_NOT_CONTACT,
        "account 2 is do-not-contact", None, "k-skipped",
    ),
}  # fmt: skip
ORDER = ["sent", "task", "capped", "capped2", "enrolled", "skipped"]  # oldest first


@pytest.fixture
def seeded(db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    """The rows of ROWS in the store the CLI opens (TOUCHFLOW_DATABASE_URL / TOUCHFLOW_PROJECT_DIR)."""
    now = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    at = {name: now - spec.age for name, spec in ROWS.items()}
    rows = []
    for name in reversed(ORDER):  # written newest first: the report orders by time, not by id
        spec = ROWS[name]
        rows.append(
            audit_row(
                at=at[name],
                run_id="seed",
                playbook_id=spec.playbook,
                playbook_version="v1",
                decision=spec.decision,
                reason=spec.reason,
                detail=spec.detail,
                step_id=spec.step,
                account_id=spec.account_id,
                contact_id=spec.contact_id,
                channel=spec.channel,
                send_key=spec.send_key,
                variant=spec.variant,
            )
        )
    with db.begin() as conn:
        record(conn, rows)
    root = tmp_path / "proj"
    root.mkdir()
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.chdir(root)
    return Seeded(now, at)


def run(*args: str) -> Result:
    result = CliRunner().invoke(app, ["audit", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


def one_line(text: str) -> str:
    """`text` with its whitespace runs as single spaces (the error console wraps at 80 columns)."""
    return " ".join(text.split())


def json_rows(*args: str) -> list[dict[str, object]]:
    result = run("--format", "json", *args)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def keys_of(*args: str) -> list[str]:
    """Which seeded rows (by name) the filters return, in the order printed."""
    by_key = {spec.send_key or "enrolled": name for name, spec in ROWS.items()}
    return [by_key[str(r["send_key"] or "enrolled")] for r in json_rows(*args)]


# --- filters --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ORDER),
        (("--playbook", "welcome"), ["sent", "capped", "capped2", "enrolled"]),
        (("--contact", "11"), ["sent"]),
        (("--account", "2"), ["task", "skipped"]),
        (("--reason", "capped_contact_daily"), ["capped", "capped2"]),
        (("--decision", "skipped"), ["skipped"]),
        (("--decision", "deferred", "--account", "3"), ["capped2"]),
        (("--playbook", "welcome", "--account", "1"), ["sent", "capped"]),
        (("--since", "7d"), ["capped", "capped2", "enrolled", "skipped"]),
        (("--since", "12h"), ["skipped"]),
        (("--until", "7d"), ["sent", "task"]),
        (("--since", "2w", "--until", "5d"), ["task"]),
        (("--limit", "2"), ["sent", "task"]),
        (("--playbook", "welcome", "--limit", "3"), ["sent", "capped", "capped2"]),
    ],
)
def test_filters(seeded: Seeded, args: tuple[str, ...], expected: list[str]) -> None:
    assert keys_of(*args) == expected


def test_since_and_until_as_iso_dates(seeded: Seeded) -> None:
    """A date is its midnight UTC: `--since` includes it, `--until` excludes it."""
    five_days_ago = (seeded.now - 5 * DAY).date().isoformat()
    assert keys_of("--since", five_days_ago) == ["capped", "capped2", "enrolled", "skipped"]
    assert keys_of("--until", five_days_ago) == ["sent", "task"]
    twenty = (seeded.now - 20 * DAY).date().isoformat()
    assert keys_of("--since", twenty, "--until", five_days_ago) == ["task"]


def test_since_and_until_as_iso_datetimes_with_offsets(seeded: Seeded) -> None:
    """The moment of `capped` written in Seoul time (+09:00), in UTC with `Z`, and naive (UTC):
    `--since` at exactly that moment includes it, `--until` excludes it."""
    capped = seeded.at["capped"].replace(tzinfo=UTC)
    for spelt in (
        capped.astimezone(SEOUL).isoformat(),
        capped.isoformat().replace("+00:00", "Z"),
        capped.replace(tzinfo=None).isoformat(),
        capped.astimezone(timezone(-timedelta(hours=5))).isoformat(timespec="seconds"),
    ):
        assert keys_of("--since", spelt) == ["capped", "capped2", "enrolled", "skipped"], spelt
        assert keys_of("--until", spelt) == ["sent", "task"], spelt
    one_second_later = (capped + timedelta(seconds=1)).astimezone(SEOUL).isoformat()
    assert keys_of("--since", one_second_later, "--reason", "capped_contact_daily") == ["capped2"]


# --- formats --------------------------------------------------------------------------------------


def test_json_lines(seeded: Seeded) -> None:
    result = run("--format", "json")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == len(ORDER)
    rows = [json.loads(line) for line in lines]  # one object per line
    for name, row in zip(ORDER, rows, strict=True):
        assert set(FIELDS) <= set(row)
        at = datetime.fromisoformat(str(row["at"]))
        assert at.tzinfo is not None and at.utcoffset() is not None
        assert at == seeded.at[name].replace(tzinfo=UTC)
        spec = ROWS[name]
        assert {k: row[k] for k in FIELDS if k != "at"} == {
            "playbook": spec.playbook,
            "step": spec.step,
            "account_id": spec.account_id,
            "contact_id": spec.contact_id,
            "channel": spec.channel,
            "decision": spec.decision.value,
            "reason": spec.reason.value,
            "detail": spec.detail,
            "variant": spec.variant,
            "send_key": spec.send_key,
        }
    assert rows[0]["detail"] == TRICKY  # quotes, a comma, a newline and Hangul survive


def test_csv_round_trips(seeded: Seeded) -> None:
    result = run("--format", "csv")
    assert result.exit_code == 0, result.output
    reader = csv.DictReader(io.StringIO(result.stdout, newline=""))
    assert tuple(reader.fieldnames or ()) == FIELDS
    rows = list(reader)
    assert json_rows() == [
        {k: (None if v == "" else int(v) if k.endswith("_id") else v) for k, v in row.items()} for row in rows
    ]
    assert rows[0]["detail"] == TRICKY
    assert [r["send_key"] for r in rows] == [ROWS[n].send_key or "" for n in ORDER]


def test_csv_and_json_with_nothing_to_show(seeded: Seeded) -> None:
    csv_out = run("--format", "csv", "--playbook", "renewal", "--contact", "11")
    assert (csv_out.exit_code, csv_out.stdout) == (0, ",".join(FIELDS) + "\n")
    json_out = run("--format", "json", "--playbook", "renewal", "--contact", "11")
    assert (json_out.exit_code, json_out.stdout) == (0, "")


def test_table(seeded: Seeded) -> None:
    result = run("--account", "2")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "audit: 2 decisions" in out
    for word in ("renewal", "task_opened", "task_created", "skipped", "suppressed_do_not_contact", "call"):
        assert word in out
    assert seeded.at["task"].replace(tzinfo=UTC).isoformat()[:10] in out
    assert "welcome" not in out and "delivered_to_channel" not in out
    everything = run()
    assert "audit: 6 decisions" in everything.stdout
    assert all(r.value in everything.stdout for r in (Reason.TRIGGER_MATCHED, Reason.CAPPED_CONTACT_DAILY))


def test_summary(seeded: Seeded) -> None:
    """`--summary`: per playbook, decision and reason, the decisions and the people they concern,
    most frequent first within a playbook; filters apply."""
    result = run("--summary", "--format", "json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [
        (r["playbook"], r["decision"], r["reason"], r["decisions"], r["contacts"], r["accounts"]) for r in lines
    ] == [
        ("renewal", "skipped", "suppressed_do_not_contact", 1, 0, 1),
        ("renewal", "task_opened", "task_created", 1, 0, 1),
        ("welcome", "deferred", "capped_contact_daily", 2, 2, 2),
        ("welcome", "enrolled", "trigger_matched", 1, 0, 1),
        ("welcome", "sent", "delivered_to_channel", 1, 1, 1),
    ]
    table = run("--summary")
    assert "detail" not in table.stdout and "audit summary: 6 decisions" in table.stdout
    only_renewal = run("--summary", "--playbook", "renewal", "--since", "7d", "--format", "json")
    assert [json.loads(line)["reason"] for line in only_renewal.stdout.splitlines()] == ["suppressed_do_not_contact"]


# --- errors ---------------------------------------------------------------------------------------


def test_a_bad_format_exits_2(seeded: Seeded) -> None:
    result = run("--format", "xml")
    assert result.exit_code == 2
    assert "--format must be table, csv or json, not 'xml'" in one_line(result.stderr)
    assert result.stdout == ""


@pytest.mark.parametrize("option", ["--since", "--until"])
def test_an_unparseable_moment_exits_2(seeded: Seeded, option: str) -> None:
    for value in ("tomorrow", "2026-13-45", "7 days ago", "12x", ""):
        result = run(option, value)
        if value == "":  # an empty value is no filter at all
            assert (result.exit_code, len(json_rows(option, value))) == (0, len(ORDER)), result.output
            continue
        assert result.exit_code == 2, (value, result.output)
        assert f"error: '{value}' is not a moment; use a date (2026-11-23), a date-time" in one_line(result.stderr)
        assert result.stdout == ""


def test_a_duration_out_of_range_exits_2(seeded: Seeded) -> None:
    result = CliRunner().invoke(app, ["audit", "--since", "99999999d"])
    assert result.exit_code == 2, repr(result.exception)
    assert "99999999d" in result.stderr


def test_a_negative_limit_is_a_usage_error(seeded: Seeded) -> None:
    result = CliRunner().invoke(app, ["audit", "--format", "json", "--limit", "-1"])
    assert result.exit_code == 2, repr(result.exception)
    assert result.stdout == ""


def test_the_summary_comes_in_every_format(seeded: Seeded) -> None:
    as_json = CliRunner().invoke(app, ["audit", "--summary", "--format", "json"])
    assert as_json.exit_code == 0, as_json.output
    counts = [json.loads(line) for line in as_json.stdout.splitlines()]
    fields = ("playbook", "decision", "reason", "decisions", "contacts", "accounts")
    assert counts and all(tuple(c) == fields for c in counts)
    assert counts == sorted(counts, key=lambda c: (c["playbook"], -c["decisions"]))
    as_csv = CliRunner().invoke(app, ["audit", "--summary", "--format", "csv"])
    assert as_csv.stdout.splitlines()[0] == ",".join(fields)
    assert len(as_csv.stdout.splitlines()) == len(counts) + 1
