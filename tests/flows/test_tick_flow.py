"""The real Prefect tick flow, under prefect_test_harness, over a small generated store.

One harness per session (it costs ~20 s to start); both databases run through it.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from engine.store.demo_data import generate
from engine.store.models import audit_log, enrollments, ledger, tasks
from tests.factories import project

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

NOW = datetime(2026, 11, 23, 9, 0)

pytestmark = pytest.mark.prefect


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def _counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            "enrollments": conn.execute(select(func.count()).select_from(enrollments)).scalar_one(),
            "emails_sent": conn.execute(
                select(func.count()).where(ledger.c.kind == "email", ledger.c.status == "sent")
            ).scalar_one(),
            "tasks": conn.execute(select(func.count()).select_from(tasks)).scalar_one(),
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
    channel, _policy = make_channel(settings, tmp_path)
    assert channel._api_key == "SG.from-the-block"  # type: ignore[attr-defined]
    assert "SG.from" not in repr(channel)
    monkeypatch.setenv("SENDGRID_API_KEY", "SG.from-env")  # the environment wins
    assert make_channel(settings, tmp_path)[0]._api_key == "SG.from-env"  # type: ignore[attr-defined]
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
    first = limiter.reserve(20)
    started = time.monotonic()
    second = limiter.reserve(20)  # the 20 slots decay at 40 a second: about half a second
    waited = time.monotonic() - started
    assert waited > 0.2
    assert len(first) == len(second) == 20
    assert all(a <= b for a, b in itertools.pairwise(first + second))
    with pytest.raises(Exception, match="touchflow-send-missing"):
        PrefectRateLimiter(rate=5.0, name="touchflow-send-missing").reserve(1)
