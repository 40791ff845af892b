"""docs/health.md is real: its model is the project's and scores a small store; its explained
account is what `explain` prints for such an account; its playbook validates against the model,
compiles and fires when an account enters the band."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, insert

from engine.compile import compile_playbook
from engine.health.compute import compute_day, explain, scores_on
from engine.health.load import load_health, load_health_text
from engine.load import load_playbook_text
from engine.store.models import health_history
from engine.validate.health import HealthNames, health_condition_problems
from tests.conftest import REPO
from tests.factories import Store
from tests.health.helpers import NOW, add_events, sent_email
from tests.language.helpers import run

DOC = (REPO / "docs" / "health.md").read_text(encoding="utf-8")
MODEL = re.search(r"<!-- health-model: project -->\n```yaml\n(.*?)```", DOC, re.S)
PLAYBOOK = re.search(r"<!-- health-playbook -->\n```yaml\n(.*?)```", DOC, re.S)
EXPLAINED = re.search(r"```\n(account \d+\n.*?)```", DOC, re.S)


def test_the_documented_model_is_the_projects() -> None:
    assert MODEL is not None
    assert load_health_text(MODEL[1], "docs/health.md") == load_health(REPO)


def test_the_documented_explanation_is_what_explain_prints(db: Engine) -> None:
    assert MODEL is not None and EXPLAINED is not None
    spec = load_health_text(MODEL[1], "docs/health.md")
    store = Store(db, NOW)
    acct = store.account(seats_purchased=100, tier="tech_touch")
    champion = store.contact(acct, role="champion")
    for _ in range(7):  # 8 contacts, only the champion active: 12.5 %
        store.contact(acct, role="user")
    store.events(acct, "login", [2], contact_id=champion)
    add_events(db, acct, "feature_used", [(4, champion, {"feature": "reports"}), (5, None, {"feature": "reports"})])
    for i in range(4):  # 4 emails sent, 1 opened: 25 %
        sent_email(db, acct, f"doc-{acct}-{i}", 10 + i, opened=i == 0)
    with db.begin() as conn:
        compute_day(conn, spec, NOW)
        [score] = scores_on(conn, NOW.date(), account_id=acct)
    documented = EXPLAINED[1].splitlines()
    printed = [f"account {documented[0].split()[1]}", *explain(score, spec)]
    # PostgreSQL's jsonb orders the components its own way: the lines, not their order.
    assert sorted(printed) == sorted(documented)


def test_the_documented_playbook_fires_when_an_account_enters_the_band(db: Engine) -> None:
    assert MODEL is not None and PLAYBOOK is not None
    spec = load_health_text(MODEL[1], "docs/health.md")
    loaded = load_playbook_text(PLAYBOOK[1], "docs/health.md")
    names = HealthNames(list(spec.components), spec.band_names())
    assert health_condition_problems(loaded, names, True, "health.yaml") == []
    playbook = compile_playbook(loaded)
    acct = Store(db, NOW).account(status="active")
    with db.begin() as conn:
        row = {"account_id": acct, "score": 80.0, "band": "healthy", "components": {}}
        conn.execute(insert(health_history), [{**row, "computed_on": NOW.date() - timedelta(days=1)}])
    assert run(db, playbook, NOW - timedelta(hours=12)) == []
    with db.begin() as conn:
        row = {"account_id": acct, "score": 60.0, "band": "at_risk", "components": {}}
        conn.execute(insert(health_history), [{**row, "computed_on": NOW.date()}])
    assert [s for s, _ in run(db, playbook, NOW)] == [acct]


def test_every_documented_yaml_block_that_is_a_model_loads(tmp_path: Path) -> None:
    blocks = re.findall(r"```yaml\n(health:\n.*?)```", DOC, re.S)
    assert blocks
    for block in blocks:
        (tmp_path / "health.yaml").write_text(block, encoding="utf-8")
        assert load_health(tmp_path) is not None
