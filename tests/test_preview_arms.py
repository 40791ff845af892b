"""`preview` shows what will be sent: every experiment arm × locale, for contacts the playbook
would really reach, with the From line; `--send-key` re-renders what one contact was sent; a
template error exits 1 naming `file:line`; `index.html` is a side-by-side review sheet."""

from __future__ import annotations

import email
import email.policy
import os
import re
from datetime import date, datetime
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import Engine, select
from typer.testing import CliRunner, Result

from engine.cli import app
from engine.compile import CompiledPlaybook
from engine.experiments.assign import assign, experiment_id
from engine.preview import PreviewError, preview, preview_sent
from engine.spec import EmailStep
from engine.store.models import ledger
from tests.factories import Store, project
from tests.journeys.helpers import run_tick

NOW = datetime(2026, 11, 23, 10, 0)
"""A Monday: accounts whose contract started on 2025-11-23 have their first anniversary."""
ANNIVERSARY = date(2025, 11, 23)
ARMS = {"celebrate": "Happy anniversary, {name}!", "year-in-numbers": "{name}: your first year in numbers"}


def _arm_of(playbook: CompiledPlaybook, account_id: int) -> str:
    """The arm the planner assigns the account to (a hash of the experiment and the subject)."""
    step = next(s for s in playbook.steps if isinstance(s.spec, EmailStep))
    experiment = cast(EmailStep, step.spec).email.experiment
    assert experiment is not None
    return assign(experiment, experiment_id(experiment, "anniversary", step.id), f"account:{account_id}").id


def test_every_arm_and_locale_for_contacts_of_the_playbooks_own_segment_and_trigger(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    store = Store(db, NOW)
    csm = store.csm(name="Mina Park", email="mina@touchflow.example")
    # Written first (lowest ids): contacts the playbook never reaches.
    young = store.account(name="Six Months Co", contract_start=date(2026, 5, 23), csm_id=csm)
    store.contact(young, "admin", locale="en")
    churned = store.account(name="Churned Co", contract_start=ANNIVERSARY, status="churned", csm_id=csm)
    store.contact(churned, "admin", locale="ko")
    evergreen = store.account(name="Evergreen Bio Co.", contract_start=ANNIVERSARY, csm_id=csm)
    admin = store.contact(evergreen, "admin", locale="en")
    store.contact(evergreen, "user", locale="en")  # not a recipient of the anniversary email
    hanbit = store.account(name="한빛 소프트", contract_start=ANNIVERSARY, locale="ko", csm_id=csm)
    champion = store.contact(hanbit, "champion")
    proj = project(tmp_path, db_url)
    anniversary = proj.by_id()["anniversary"]

    with db.connect() as conn:
        report = preview(conn, anniversary, proj.renderer, tmp_path / "p", now=NOW)

    assert report.notes == []
    shown = {(r.arm, r.locale, r.contact_id) for r in report.previews}
    assert shown == {(arm, locale, who) for arm in ARMS for locale, who in (("en", admin), ("ko", champion))}
    for r in report.previews:
        assert r.error is None, r
        name = "Evergreen Bio Co." if r.contact_id == admin else "한빛 소프트"
        if r.arm == "celebrate":
            assert name in r.subject and r.subject != ARMS["year-in-numbers"].format(name=name)
        elif r.locale == "en":
            assert r.subject == ARMS["year-in-numbers"].format(name=name)
        else:
            assert r.subject == f"{name}, 숫자로 보는 함께한 1년"
        assert r.sender == "Mina Park <mina@touchflow.example>"  # from: csm
        owner = evergreen if r.contact_id == admin else hanbit
        assert r.assigned == (r.arm == _arm_of(anniversary, owner))
        html, text = (Path(f).read_text(encoding="utf-8") for f in r.files)
        assert name in html and f"Subject: {r.subject}" in text and f"From: {r.sender}" in text

    sheet = report.sheet.read_text(encoding="utf-8")
    # Arms in columns, locales in rows, each email in a sandboxed frame with its subject and From.
    head = sheet[sheet.index("<thead>") : sheet.index("</thead>")]
    assert head.index("celebrate") < head.index("year-in-numbers")
    assert sheet.count('<iframe sandbox=""') == len(report.previews)
    assert re.search(r"<th[^>]*>en</th>.*<th[^>]*>ko</th>", sheet, re.S)
    assert "Mina Park &lt;mina@touchflow.example&gt;" in sheet
    assert "<script" not in sheet.replace("&lt;script", "")


def test_one_arm_and_an_unknown_arm(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    account = store.account(name="Evergreen Bio Co.", contract_start=ANNIVERSARY)
    store.contact(account, "admin", locale="en")
    proj = project(tmp_path, db_url)
    anniversary = proj.by_id()["anniversary"]

    with db.connect() as conn:
        only = preview(conn, anniversary, proj.renderer, tmp_path / "p", now=NOW, arm="year-in-numbers")
        assert {r.arm for r in only.previews} == {"year-in-numbers"}
        with pytest.raises(PreviewError, match=r"no arm 'year-in-number' \(did you mean 'year-in-numbers'\?\)"):
            preview(conn, anniversary, proj.renderer, tmp_path / "p", now=NOW, arm="year-in-number")
        with pytest.raises(PreviewError, match="celebrate, year-in-numbers"):
            preview(conn, anniversary, proj.renderer, tmp_path / "p", now=NOW, arm="x")


def test_when_nobody_matches_any_contact_is_shown_and_the_note_says_so(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    young = store.account(name="Six Months Co", contract_start=date(2026, 5, 23))
    person = store.contact(young, "admin", locale="en")
    proj = project(tmp_path, db_url)

    with db.connect() as conn:
        report = preview(conn, proj.by_id()["anniversary"], proj.renderer, tmp_path / "p", now=NOW)

    assert len(report.notes) == 1 and "nobody matches" in report.notes[0] and "any contact" in report.notes[0]
    assert {r.contact_id for r in report.previews} == {person}


def test_send_key_shows_what_that_contact_was_sent(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    proj = project(tmp_path, db_url)
    anniversary = proj.by_id()["anniversary"]
    # Accounts until one falls in the arm with its own subject (assignment is by hash of the id).
    for _ in range(40):
        account = store.account(name="Evergreen Bio Co.", contract_start=ANNIVERSARY)
        store.contact(account, "admin", locale="en")
        if _arm_of(anniversary, account) == "year-in-numbers":
            break
    run_tick(db, proj, NOW)
    with db.connect() as conn:
        row = conn.execute(select(ledger).where(ledger.c.account_id == account, ledger.c.status == "sent")).one()
    sent = email.message_from_bytes(
        (proj.settings.outbox_dir / f"{row.send_key}.eml").read_bytes(), policy=email.policy.default
    )

    with db.connect() as conn:
        report = preview_sent(conn, proj.by_id(), proj.renderer, tmp_path / "p", row.send_key)
        with pytest.raises(PreviewError, match="no email with send key 'nope'"):
            preview_sent(conn, proj.by_id(), proj.renderer, tmp_path / "p", "nope")

    (shown,) = report.previews
    assert shown.subject == str(sent["Subject"]) == "Evergreen Bio Co.: your first year in numbers"
    assert shown.arm == "year-in-numbers" and shown.contact_id == row.contact_id
    assert str(sent["From"]) == shown.sender


def _invoke(root: Path, db_url: str, *args: str) -> Result:
    env = {"TOUCHFLOW_PROJECT_DIR": str(root), "TOUCHFLOW_DATABASE_URL": db_url, "COLUMNS": "200"}
    old = os.getcwd()
    os.chdir(root)
    try:
        result = CliRunner().invoke(app, list(args), env=env)
    finally:
        os.chdir(old)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result


BROKEN = """\
{% extends "_layout.html" %}
{% block subject %}Hi {{ contact.name }}{% endblock %}
{% block content %}
<p>{{ account.traits.plan_limit * 2 }}</p>
{% endblock %}
"""

HELLO = """\
id: hello
name: Hello
subject: contact
trigger: {plan: starter}
steps:
  - id: greet
    email: {template: hello/broken}
"""


def test_a_template_error_exits_1_naming_file_and_line(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    store.contact(store.account(plan="starter"), "admin", locale="en")
    proj = project(tmp_path, db_url, playbooks={"hello": HELLO}, templates={"hello/broken.en.html": BROKEN})
    root = proj.settings.project_dir

    result = _invoke(root, db_url, "preview", "hello", "--now", NOW.isoformat())

    assert result.exit_code == 1, result.output
    assert "templates/email/hello/broken.en.html:4: error: 'dict object' has no attribute 'plan_limit'" in result.output
    assert "plan_limit" in result.output


def test_the_cli_shows_arms_and_from_and_refuses_unknown_arms_and_keys(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    account = store.account(name="Evergreen Bio Co.", contract_start=ANNIVERSARY)
    store.contact(account, "admin", locale="en")
    root = project(tmp_path, db_url).settings.project_dir

    shown = _invoke(root, db_url, "preview", "anniversary", "--now", NOW.isoformat())
    assert shown.exit_code == 0, shown.output
    assert "year-in-numbers" in shown.output and "celebrate" in shown.output and "From" in shown.output
    arm = _invoke(root, db_url, "preview", "anniversary", "--now", NOW.isoformat(), "--arm", "nope")
    assert arm.exit_code == 2 and "no arm 'nope'" in arm.output and "celebrate, year-in-numbers" in arm.output
    key = _invoke(root, db_url, "preview", "--send-key", "nope")
    assert key.exit_code == 2 and "no email with send key 'nope'" in key.output
