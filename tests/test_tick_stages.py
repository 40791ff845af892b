"""The order of a tick is written once (`engine.tick.TICK_STAGES`): tests, simulations and dry
runs walk the same list as the Prefect flow, reconciliation and the outbox index included."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from engine import tick as api
from engine.dispatch import OutboxChannel
from engine.store.models import audit_log, ledger
from tests.factories import Store, project

NOW = datetime(2026, 11, 23, 9, 0)


def _renewing_account(db: Engine) -> int:
    """An account renewing in 88 days with an admin and a champion: renewal-90d mails both."""
    store = Store(db, NOW)
    account = store.account(renewal_date=(NOW + timedelta(days=88)).date())
    store.contact(account, "admin")
    store.contact(account, "champion")
    return account


def _names(stage_log: list[str]) -> list[str]:
    return [n for n in stage_log if not n.startswith("evaluate-and-advance:")]


def test_every_caller_walks_the_same_list(
    monkeypatch: pytest.MonkeyPatch, db: Engine, db_url: str, tmp_path: Path
) -> None:
    calls: list[str] = []

    def recording(stage: api.Stage, *args: object) -> object:
        calls.append(stage.name if stage.scope != "playbook" else f"{stage.name}:{args[1]}")
        return stage.run(*args)

    proj = project(tmp_path, db_url)
    ids = [p.id for p in proj.active()]
    live = api.Tick(api.LiveStore(db), proj, NOW, "run-1", ids, OutboxChannel(tmp_path / "out"))
    api.run_tick(live, call=recording)
    assert _names(calls)[0] == "reconcile"
    assert _names(calls)[-2:] == ["dispatch-batch", "outbox-index"]  # the last batch claims nothing
    assert [c.split(":")[1] for c in calls if c.startswith("evaluate-and-advance:")] == ids
    # The scopes in the list say how each stage is called: that is the whole order.
    assert [(s.name, s.scope) for s in api.TICK_STAGES] == [
        ("reconcile", "tick"),
        ("health", "tick"),
        ("evaluate-and-advance", "playbook"),
        ("dispatch-batch", "batches"),
        ("outbox-index", "tick"),
    ]


def test_a_stage_added_to_the_list_runs_in_run_stages_and_in_dry_runs(
    monkeypatch: pytest.MonkeyPatch, db: Engine, db_url: str, tmp_path: Path
) -> None:
    seen: list[bool] = []
    added = api.Stage("count", "tick", lambda tick: seen.append(tick.store.dry))
    monkeypatch.setattr("engine.tick.stages.TICK_STAGES", (*api.TICK_STAGES, added))
    proj = project(tmp_path, db_url)
    ids = [p.id for p in proj.active()]
    api.run_stages(db, proj, ids, NOW, "run-1", OutboxChannel(tmp_path / "out"))
    api.dry_run(db, proj, ids, NOW, "run-2")
    assert seen == [False, True]


def test_run_stages_reconciles_and_writes_the_outbox_index(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Before the order was data, only the flow reconciled and wrote the index."""
    account = _renewing_account(db)
    proj = project(tmp_path, db_url)
    outbox = tmp_path / "out"
    stale = NOW - 3 * proj.delivery.reconcile_after
    with db.begin() as conn:  # a message left `sending` by a dispatcher that died long ago
        conn.execute(
            insert(ledger).values(
                send_key="k" * 64, kind="email", channel="outbox", status="sending", playbook_id="renewal-90d",
                playbook_version="v", step_id="s", enrollment_id=1, account_id=account, contact_id=None,
                payload={}, created_at=stale, updated_at=stale,
            )
        )  # fmt: skip
    api.run_stages(db, proj, ["renewal-90d"], NOW, "run-1", OutboxChannel(outbox))
    with db.connect() as conn:
        reasons = conn.execute(select(audit_log.c.reason).where(audit_log.c.send_key == "k" * 64)).scalars().all()
    assert reasons[0] == "not_in_outbox"  # reconciled from the disk: never written, back in the queue
    sent = sorted(p.name for p in outbox.glob("*.eml"))
    assert len(sent) == 2 and (outbox / "index.html").read_text(encoding="utf-8").count(".eml") == 2


def test_a_dry_run_writes_nothing_and_takes_no_send_slot(db: Engine, db_url: str, tmp_path: Path) -> None:
    _renewing_account(db)
    proj = project(tmp_path, db_url)
    [summary] = api.dry_run(db, proj, ["renewal-90d"], NOW, "dry")
    assert (summary.enrolled, summary.emails) == (1, 2)
    with db.connect() as conn:
        assert conn.execute(select(ledger.c.id)).all() == []
    assert api.complete_settings(api.DispatchSettings(), proj, api.DryStore(None)).limiter is None  # type: ignore[arg-type]
