"""`touchflow health`, `approvals list`, `tasks list`, `portfolio` and `funnel --by tier|segment`
read at COLUMNS=80 outside a terminal: no line wider than 80 cells (emoji and CJK count two), none
ending in spaces, whatever a customer named an account, a CSM or a segment (200 characters,
emoji, right-to-left text, control characters); JSON and CSV do not depend on the width.

Each command runs as a real process, as `COLUMNS=80 touchflow … | less` would, on both databases."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from rich.cells import cell_len
from sqlalchemy import Engine, insert

from engine.store.models import health_history
from tests.approvals.helpers import ARMS, HELLO, required
from tests.factories import Store
from tests.tasks.rows import task

NOW = datetime(2026, 6, 15, 9)  # a Monday
TOUCHFLOW = str(Path(sys.executable).parent / "touchflow")
# 200 characters: words in four scripts, emoji, an RTL override, a word longer than any line.
HOSTILE = ("Acme 🚀📊 분석 שלום עולם مرحبا\u202e Ltd\x1b[31m " + "Z" * 90 + " ") * 4
HOSTILE = HOSTILE[:200]
# An address as long as they come: the approver is shown whole, folded if it must be.
APPROVER = (
    "approver.of.the.customer.success.content.team@" + "a-rather-long-subdomain-of-the-review-team." * 3 + "example"
)
COMPONENTS = {
    "adoption": 40.0,
    "key_features": 60.0,
    "support": 100.0,
    "survey": 10.0,
    "billing": 100.0,
    "engagement": 60.0,
    "relationships": 40.0,
}


def _touchflow(project_dir: Path, db_url: str, *args: str, columns: int | None = 80) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(TOUCHFLOW_PROJECT_DIR=str(project_dir), TOUCHFLOW_DATABASE_URL=db_url)
    if columns is not None:
        env["COLUMNS"] = str(columns)
    done = subprocess.run([TOUCHFLOW, *args], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout


def _fits(text: str, width: int = 80) -> list[str]:
    lines = text.splitlines()
    assert lines, "nothing was printed"
    wide = [(cell_len(line), line) for line in lines if cell_len(line) > width]
    assert not wide, "\n".join(f"{n}: {line}" for n, line in wide)
    padded = [line for line in lines if line != line.rstrip()]
    assert not padded, "lines ending in spaces:\n" + "\n".join(repr(line) for line in padded)
    assert "\x1b" not in text  # a name's escape sequence is shown as text, never run
    return lines


def _same_at_any_width(project_dir: Path, db_url: str, *args: str) -> str:
    narrow = _touchflow(project_dir, db_url, *args, columns=80)
    assert narrow == _touchflow(project_dir, db_url, *args, columns=None)
    return narrow


@pytest.fixture
def store(db: Engine, tmp_path: Path) -> dict[str, int]:
    """A CSM and accounts with hostile names, scored, with tasks and a renewal at risk."""
    (tmp_path / "playbooks").mkdir()
    s = Store(db, NOW)
    csm = s.csm(name=HOSTILE, email="mina.park.has.a.long.address.for.a.csm.of.this.team@touchflow-demo.example")
    ids = {"csm": csm}
    for i, tier in enumerate(("high_touch", "low_touch", "tech_touch")):
        acct = s.account(
            name=HOSTILE,
            tier=tier,
            csm_id=csm,
            contract_start=date(2026, 6, 1) + timedelta(days=i),
            renewal_date=(NOW + timedelta(days=30)).date(),
            traits={"segment": HOSTILE if i else "enterprise"},
        )
        with db.begin() as conn:
            conn.execute(
                insert(health_history),
                [{"account_id": acct, "computed_on": NOW.date(), "score": 55.5 + i, "band": "at_risk",
                  "components": {k: {"value": v, "points": v, "why": HOSTILE} for k, v in COMPONENTS.items()}}],
            )  # fmt: skip
        task(db, acct, csm, NOW - timedelta(days=3 + i), title=HOSTILE)
        ids[tier] = acct
    task(db, ids["low_touch"], csm, NOW - timedelta(days=20), status="done", closed_at=NOW, outcome="resolved",
         closed_by=HOSTILE)  # fmt: skip
    return ids


def test_health_fits_80_columns(store: dict[str, int], db_url: str, tmp_path: Path) -> None:
    lines = _fits(_touchflow(tmp_path, db_url, "health", "--now", NOW.isoformat()))
    shown = "\n".join(lines)
    assert all(str(store[t]) in shown for t in ("high_touch", "low_touch", "tech_touch"))
    assert "relationships" in shown and "55.5" in shown
    rows = [
        json.loads(line) for line in _same_at_any_width(tmp_path, db_url, "health", "--format", "json").splitlines()
    ]
    assert [r["score"] for r in rows] == [55.5, 56.5, 57.5]
    assert set(rows[0]) == {"account_id", "day", "score", "band", "components"}
    flat = list(csv.DictReader(io.StringIO(_same_at_any_width(tmp_path, db_url, "health", "--format", "csv"))))
    assert flat[0]["adoption"] == "40.0" and len(flat) == 3


def test_tasks_list_fits_80_columns(store: dict[str, int], db_url: str, tmp_path: Path) -> None:
    lines = _fits(_touchflow(tmp_path, db_url, "tasks", "list", "--now", NOW.isoformat()))
    assert any("mina.park.has.a.long.address" in line for line in lines)
    assert any("done:resolved" in line for line in lines)
    rows = [
        json.loads(line)
        for line in _same_at_any_width(tmp_path, db_url, "tasks", "list", "--format", "json").splitlines()
    ]
    assert len(rows) == 4 and sum(r["title"].startswith("Acme 🚀📊 분석") for r in rows) == 3
    assert (
        len(list(csv.DictReader(io.StringIO(_same_at_any_width(tmp_path, db_url, "tasks", "list", "--format", "csv")))))
        == 4
    )


def test_portfolio_fits_80_columns(store: dict[str, int], db_url: str, tmp_path: Path) -> None:
    _fits(_touchflow(tmp_path, db_url, "portfolio", "--now", NOW.isoformat()))
    email = "MINA.PARK.has.a.long.address.for.a.csm.of.this.team@touchflow-demo.example"
    detail = _fits(_touchflow(tmp_path, db_url, "portfolio", "--csm", email, "--now", NOW.isoformat()))
    shown = "\n".join(detail)
    assert "at risk, renewing within 90 days: 3" in shown
    assert all(str(store[t]) in shown for t in ("high_touch", "low_touch", "tech_touch"))
    (one,) = map(
        json.loads,
        _same_at_any_width(tmp_path, db_url, "portfolio", "--format", "json", "--now", NOW.isoformat()).splitlines(),
    )
    assert len(one["at_risk_renewing"]) == 3
    _same_at_any_width(tmp_path, db_url, "portfolio", "--format", "csv", "--now", NOW.isoformat())


@pytest.mark.parametrize("by", ["tier", "segment"])
def test_funnel_by_group_fits_80_columns(store: dict[str, int], db_url: str, tmp_path: Path, by: str) -> None:
    (tmp_path / "health.yaml").write_text(
        (Path(__file__).parents[2] / "health.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    args = ("funnel", "--weeks", "3", "--by", by, "--now", NOW.isoformat())
    lines = _fits(_touchflow(tmp_path, db_url, *args))
    assert any("2026-06-01" in line for line in lines)
    assert any("bottleneck:" in line for line in lines)
    rows = [json.loads(line) for line in _same_at_any_width(tmp_path, db_url, *args, "--format", "json").splitlines()]
    assert {r[by] for r in rows} >= ({"high_touch", "low_touch", "tech_touch"} if by == "tier" else {"enterprise"})
    _same_at_any_width(tmp_path, db_url, *args, "--format", "csv")


def test_approvals_list_fits_80_columns(db: Engine, db_url: str, tmp_path: Path) -> None:
    proj = required(tmp_path, db_url, HELLO, ARMS)
    project_dir = proj.settings.project_dir
    _touchflow(project_dir, db_url, "approvals", "approve", "hello", "greet", "--as", APPROVER)
    lines = _fits(_touchflow(project_dir, db_url, "approvals", "list"))
    assert any(line.startswith("hello") for line in lines)
    listed = _same_at_any_width(project_dir, db_url, "approvals", "list", "--format", "json")
    rows = [json.loads(line) for line in listed.splitlines()]
    assert len(rows) == 6
    assert {r["approved_by"] for r in rows if r["playbook"] == "hello"} == {APPROVER}
    # The address is shown whole, folded over lines if it must be.
    assert APPROVER in "".join(line.strip() for line in lines)


def test_status_fits_80_columns_and_names_every_playbook_whole(db: Engine, db_url: str) -> None:
    """The project's own playbooks: one source is read by all sixteen, some with long ids. At 80
    columns each source is a block and every id is whole (a table cut them to `onboarding-go-l…`)."""
    from tests.conftest import REPO

    lines = _fits(_touchflow(REPO, db_url, "status"))
    text = " ".join(" ".join(lines).split())
    assert "…" not in text
    for playbook in ("onboarding-go-live", "support-volume-by-tier", "survey-low-health"):
        assert playbook in text
    assert any(line.startswith("login") for line in lines)
