"""Every table the command line prints is readable at 80 and at 60 columns: no line wider than the
terminal, no id cut to a prefix (`supp…` for two playbooks), and a long text (an audit detail, a
verdict) on a line of its own instead of folded into a narrow column.

Rendered into a recording Console of the width under test, put in place of the command's own."""

from __future__ import annotations

import io
from datetime import datetime
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import Engine
from typer.testing import CliRunner

from engine.audit import Decision, Reason, audit_row, record
from engine.cli import app, experiments, reports
from engine.cli import run as run_cli
from engine.experiments.report import ArmMetrics, compare_arms
from engine.spec.steps import Experiment

WIDTHS = [80, 60]
PLAYBOOKS = ["activation-30d", "support-spike", "support-volume-by-tier", "a-playbook-whose-id-is-long-by-design"]
DETAIL = (
    "1 email to contact 12 in the last 24 hours, cap 1; the next allowed moment is "
    "2026-11-25T09:00 in Europe/London, after the quiet hours and the weekend"
)


def recording(width: int) -> Console:
    return Console(width=width, record=True, file=io.StringIO(), highlight=False, color_system=None)


def check_fits(console: Console, width: int) -> list[str]:
    """The printed lines, after checking none is wider than the console nor ends an id with `…`."""
    lines = console.export_text().splitlines()
    assert lines, "nothing was printed"
    too_wide = [line for line in lines if len(line) > width]
    assert not too_wide, too_wide
    assert not any("…" in line for line in lines), "\n".join(lines)
    return lines


def whole_words(lines: list[str]) -> set[str]:
    """Every word printed (table borders and punctuation around it stripped)."""
    return {word.strip("│┃|,;()") for line in lines for word in line.split()}


def spans(lines: list[str], text: str, at_most: int) -> None:
    """`text` is printed from the start of a line (after the indent) over at most `at_most` lines."""
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(text[:20])]
    assert starts, f"{text[:20]!r} does not start a line:\n" + "\n".join(lines)
    joined = [" ".join(line.strip() for line in lines[i : i + at_most]) for i in starts]
    assert any(j.startswith(text) for j in joined), "\n".join(lines)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_run_summary_shows_every_playbook_id_whole(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    console = recording(width)
    monkeypatch.setattr(run_cli, "out", console)
    rows: list[dict[str, object]] = [
        {
            "playbook": pid,
            "matched": 10 * i + 1,
            "enrolled": 10 * i,
            "emails": i,
            "tasks": 0,
            "deferred": 2,
            "skipped": 3,
            "failed": 0,
            "converted": 0,
            "exited": 0,
            "error": None,
        }
        for i, pid in enumerate(PLAYBOOKS)
    ]
    run_cli._summary_table(rows, datetime(2026, 11, 24, 9), False, Path("/tmp/outbox"))
    lines = check_fits(console, width)
    assert set(PLAYBOOKS) <= whole_words(lines)
    text = "\n".join(lines)
    assert "matched 31" in text or "31" in whole_words(lines)  # support-volume-by-tier's count


@pytest.mark.parametrize("width", WIDTHS)
def test_an_audit_detail_is_on_a_line_of_its_own(
    width: int, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = datetime(2026, 11, 24, 9)
    rows = [
        audit_row(
            at=at,
            run_id="seed",
            playbook_id=pid,
            playbook_version="v1",
            decision=Decision.DEFERRED,
            reason=Reason.CAPPED_CONTACT_DAILY,
            detail=DETAIL,
            step_id="email-welcome-to-the-product",
            account_id=1,
            contact_id=12,
            channel="email",
            send_key=f"k-{pid}",
        )
        for pid in PLAYBOOKS
    ]
    with db.begin() as conn:
        record(conn, rows)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    console = recording(width)
    monkeypatch.setattr(reports, "out", console)
    result = CliRunner().invoke(app, ["audit"])
    assert result.exit_code == 0, result.output
    lines = check_fits(console, width)
    assert set(PLAYBOOKS) <= whole_words(lines)
    assert "email-welcome-to-the-product" in whole_words(lines)
    assert "capped_contact_daily" in whole_words(lines)
    spans(lines, DETAIL, at_most=len(DETAIL) // (width - 10) + 1)


@pytest.mark.parametrize("width", WIDTHS)
def test_an_experiment_verdict_is_on_a_line_of_its_own(width: int, monkeypatch: pytest.MonkeyPatch) -> None:
    exp = Experiment.model_validate({"arms": [{"id": "a"}, {"id": "b-longer-arm-name"}], "min_sample": 100})
    arms = [
        ArmMetrics("a", is_control=True, enrolled=40, sent=40, opened=10, clicked=4, converted=8),
        ArmMetrics("b-longer-arm-name", enrolled=40, sent=40, opened=20, clicked=6, converted=9),
    ]
    result = compare_arms("anniversary", "thanks", "anniversary.thanks", exp, arms, "opened")
    console = recording(width)
    monkeypatch.setattr(experiments, "out", console)
    experiments._print_tables([result])
    lines = check_fits(console, width)
    assert {"a", "b-longer-arm-name"} <= whole_words(lines)
    verdicts = {a.verdict for a in result.report.arms}
    assert verdicts and all(len(v) > 20 for v in verdicts)
    for verdict in verdicts:
        spans(lines, f"verdict: {verdict}", at_most=len(verdict) // (width - 10) + 2)
    spans(lines, result.summary, at_most=len(result.summary) // (width - 10) + 1)
