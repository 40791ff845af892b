"""The real Prefect tick flow, under prefect_test_harness, over a small generated store.

One harness per session (it costs ~20 s to start); both databases run through it.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from demo.data import generate
from engine.project import Project
from engine.store.models import audit_log, enrollments, ledger, tasks
from tests.factories import Store, project
from tests.fakes.sendgrid_server import FakeSendGrid

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

NOW = datetime(2026, 11, 23, 9, 0)

pytestmark = pytest.mark.prefect


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "enrollments": conn.execute(select(func.count()).select_from(enrollments)).scalar_one(),
            "emails_sent": conn.execute(
                select(func.count()).where(ledger.c.kind == "email", ledger.c.status == "sent")
            ).scalar_one(),
            # Tasks a tick opened (the demo store also holds the past year's closed tasks).
            "tasks": conn.execute(select(func.count()).where(tasks.c.closed_at.is_(None))).scalar_one(),
            "audit": conn.execute(select(func.count()).select_from(audit_log)).scalar_one(),
        }


def test_tick_flow_end_to_end(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    generate(db, accounts=300, seed=11, now=NOW.replace(hour=0))
    proj = project(tmp_path, db_url)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(proj.settings.outbox_dir))
    from flows.tick import tick

    first = {row["playbook"]: row for row in tick(now=NOW)}
    assert set(first) == {p.id for p in proj.active()}
    assert all(first[pid]["enrolled"] > 0 for pid in ("renewal-90d", "inactive-60d", "support-spike")), first
    assert first["support-spike"]["tasks"] == first["support-spike"]["enrolled"]

    files = sorted(proj.settings.outbox_dir.glob("*.eml"))
    after_first = _counts(db)
    assert len(files) == after_first["emails_sent"] == sum(r["emails"] for r in first.values()) > 0
    assert after_first["tasks"] == sum(r["tasks"] for r in first.values())
    assert (proj.settings.outbox_dir / "index.html").read_text(encoding="utf-8").count("<tr>") == len(files) + 1
    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["X-Touchflow-Send-Key"] == files[0].stem
    with db.connect() as conn:
        decisions = dict(conn.execute(select(audit_log.c.decision, func.count()).group_by(audit_log.c.decision)).all())
    assert decisions["sent"] == len(files)
    assert decisions["enrolled"] == sum(r["enrolled"] for r in first.values())
    assert decisions["task_opened"] == after_first["tasks"]

    second = {row["playbook"]: row for row in tick(now=NOW)}
    assert all((r["enrolled"], r["emails"], r["tasks"]) == (0, 0, 0) for r in second.values()), second
    assert _counts(db) == after_first
    assert sorted(proj.settings.outbox_dir.glob("*.eml")) == files

    preview = {row["playbook"]: row for row in tick(now=NOW.replace(day=24), dry_run=True)}
    assert set(preview) == set(first)
    assert _counts(db) == after_first  # a dry run writes nothing


def test_the_sendgrid_api_key_can_come_from_a_prefect_secret_block(
    harness: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from prefect.blocks.system import Secret

    from engine.delivery_config import DeliverySettings
    from engine.dispatch.factory import ChannelConfigError, make_channel

    monkeypatch.delenv("SENDGRID_API_KEY", raising=False)
    Secret(value="SG.from-the-block").save("touchflow-sendgrid-test", overwrite=True)
    settings = DeliverySettings.model_validate(
        {"channel": "sendgrid", "sendgrid": {"api_key_block": "touchflow-sendgrid-test"}}
    )
    channel = make_channel(settings, tmp_path).channel
    assert channel._api_key == "SG.from-the-block"  # type: ignore[attr-defined]
    assert "SG.from" not in repr(channel)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-env")  # the environment wins
    assert make_channel(settings, tmp_path).channel._api_key == "SG.from-env"  # type: ignore[attr-defined]
    monkeypatch.delenv("SENDGRID_API_KEY")
    missing = DeliverySettings.model_validate({"channel": "sendgrid", "sendgrid": {"api_key_block": "no-such-block"}})
    with pytest.raises(ChannelConfigError, match="no-such-block"):
        make_channel(missing, tmp_path)


def test_the_global_send_rate_can_be_kept_by_a_prefect_concurrency_limit(harness: None) -> None:
    """With a Prefect server, `rate_limit: N` uses a global concurrency limit with slot decay:
    once its slots are taken, the next reservation waits for them to decay."""
    import time

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate

    from engine.policy.ratelimit import PrefectRateLimiter

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name="touchflow-send-test", limit=20, slot_decay_per_second=40.0)
        )
    limiter = PrefectRateLimiter(rate=40.0, name="touchflow-send-test")
    first = limiter.reserve(20)  # a grant's moments already past when it is answered are dropped
    started = time.monotonic()
    second = limiter.reserve(20)  # the 20 slots decay at 40 a second: about half a second
    waited = time.monotonic() - started
    assert waited > 0.2
    assert 0 < len(first) <= 20 and 0 < len(second) <= 20 and limiter.calls == 2
    assert all(a <= b for a, b in itertools.pairwise(first + second))
    with pytest.raises(Exception, match="touchflow-send-missing"):
        PrefectRateLimiter(rate=5.0, name="touchflow-send-missing").reserve(1)


HELLO = """id: hello
name: Hello
trigger: {plan: hello}
steps:
  - id: hello
    email: {to: {role: [admin]}, template: welcome/hello}
"""
CALL = """id: call
name: Call
trigger: {plan: call}
steps:
  - id: call
    task: {title: "Call {{ account.name }}"}
"""


def _small_project(
    tmp_path: Path, db: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch, touchflow_yaml: str = ""
) -> Project:
    """Two playbooks and an account for each; the flow's settings point at them."""
    store = Store(db, NOW)
    for plan in ("hello", "call"):
        store.contact(store.account(plan=plan, name=f"{plan.title()} Co"), "admin")
    proj = project(tmp_path, db_url, playbooks={"hello": HELLO, "call": CALL})
    if touchflow_yaml:
        (proj.settings.project_dir / "touchflow.yaml").write_text(touchflow_yaml, encoding="utf-8")
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(proj.settings.outbox_dir))
    return proj


def test_ledger_and_audit_rows_name_the_configured_channel(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.tick import tick

    with FakeSendGrid() as fake:
        monkeypatch.setenv("SENDGRID_API_KEY", "SG.test-key")
        config = f"channel: sendgrid\nsendgrid: {{host: '{fake.url}', timeout: 2s, sandbox: true}}\n"
        _small_project(tmp_path, db, db_url, monkeypatch, config)
        rows = {row["playbook"]: row for row in tick(now=NOW)}
        accepted = len(fake.accepted)
    assert (rows["hello"]["emails"], rows["call"]["tasks"], accepted) == (1, 1, 1)
    with db.connect() as conn:
        ledger_channels = conn.execute(select(ledger.c.kind, ledger.c.channel).order_by(ledger.c.id)).all()
        audit_channels = conn.execute(
            select(audit_log.c.decision, audit_log.c.channel)
            .where(audit_log.c.playbook_id == "hello", audit_log.c.channel.is_not(None))
            .order_by(audit_log.c.id)
        ).all()
    assert sorted(ledger_channels) == [("email", "sendgrid"), ("task", "task")]
    assert audit_channels == [("sent", "sendgrid")]


def test_a_live_tick_never_goes_back_in_time_unless_forced(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.tick import TimeWentBackwards, last_tick
    from flows.tick import tick

    _small_project(tmp_path, db, db_url, monkeypatch)
    week_ago = NOW - timedelta(days=7)
    tick(now=NOW)
    after_first = _counts(db)

    with pytest.raises(TimeWentBackwards, match="refusing to go back in time; pass --force to run anyway"):
        tick(now=week_ago)
    assert _counts(db) == after_first and last_tick(db) == NOW

    preview = {row["playbook"]: row for row in tick(now=week_ago, dry_run=True)}  # not a live tick
    assert set(preview) == {"hello", "call"} and _counts(db) == after_first

    forced = {row["playbook"]: row for row in tick(now=week_ago, force=True)}
    assert set(forced) == {"hello", "call"}
    assert last_tick(db) == NOW  # the latest tick stays the mark


def test_a_failing_playbook_is_reported_while_the_others_run(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.tick as flow_module
    from flows.tick import tick

    _small_project(tmp_path, db, db_url, monkeypatch)
    real_load = flow_module.load_project

    def load_with_broken_sql(settings: Any) -> Project:
        from tests.journeys.test_playbook_isolation import _with_broken_sql

        return _with_broken_sql(real_load(settings), "call")

    monkeypatch.setattr(flow_module, "load_project", load_with_broken_sql)

    rows = {row["playbook"]: row for row in tick(now=NOW)}

    assert (rows["hello"]["enrolled"], rows["hello"]["emails"], rows["hello"]["error"]) == (1, 1, None)
    assert rows["call"]["error"].startswith("evaluating: ") and "no_such_table" in rows["call"]["error"]
    with db.connect() as conn:
        failed = conn.execute(select(audit_log).where(audit_log.c.decision == "failed")).one()
    assert (failed.playbook_id, failed.reason, failed.detail) == ("call", "playbook_failed", rows["call"]["error"])


def test_touchflow_run_says_which_playbook_failed_and_exits_1(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from typer.testing import CliRunner

    import flows.tick as flow_module
    from engine.cli import app
    from tests.journeys.test_playbook_isolation import _with_broken_sql

    _small_project(tmp_path, db, db_url, monkeypatch)
    monkeypatch.setenv("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # `run` sets it otherwise
    real_load = flow_module.load_project
    monkeypatch.setattr(flow_module, "load_project", lambda settings: _with_broken_sql(real_load(settings), "call"))
    runner = CliRunner()

    broken = runner.invoke(app, ["run", "--now", NOW.isoformat(), "--json"])

    assert broken.exit_code == 1, broken.output
    rows = {row["playbook"]: row for row in json.loads(broken.stdout)}
    assert (rows["hello"]["emails"], rows["hello"]["error"]) == (1, None)
    said = " ".join(broken.stderr.split())
    assert said.startswith(f"error: playbook 'call' failed ({rows['call']['error']})"), said
    assert "Traceback" not in broken.output

    monkeypatch.setattr(flow_module, "load_project", real_load)
    week_ago = (NOW - timedelta(days=7)).isoformat()
    refused = runner.invoke(app, ["run", "--now", week_ago])
    assert refused.exit_code == 1 and "refusing to go back in time" in refused.stderr
    forced = runner.invoke(app, ["run", "--now", week_ago, "--force", "--json"])
    assert forced.exit_code == 0, forced.output
    assert {row["playbook"] for row in json.loads(forced.stdout)} == {"hello", "call"}


def test_a_stage_added_to_the_tick_runs_in_the_flow_as_a_prefect_task(
    harness: None, db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from prefect.context import TaskRunContext

    from engine import tick as api

    proj = project(tmp_path, db_url)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(proj.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TOUCHFLOW_OUTBOX", str(proj.settings.outbox_dir))
    seen: list[tuple[str, str | None]] = []

    def audit_stage(tick: api.Tick) -> None:
        context = TaskRunContext.get()
        seen.append((tick.run_id, context.task_run.name if context else None))

    stages = (*api.TICK_STAGES, api.Stage("audit-check", "tick", audit_stage))
    monkeypatch.setattr("engine.tick.stages.TICK_STAGES", stages)
    from flows.tick import tick

    tick(now=NOW)
    tick(now=NOW, dry_run=True)
    assert [name for _, name in seen] == ["audit-check", "audit-check"]
