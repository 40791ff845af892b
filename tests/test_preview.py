"""`preview` renders every email step × locale for contacts the playbook reaches, and changes nothing."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from demo.data import generate
from engine.preview import Preview, preview
from engine.store.models import accounts, audit_log, contacts, enrollments, ledger, tasks
from tests.factories import Store, project

NOW = datetime(2026, 11, 23)


def _snapshot(db: Engine) -> dict[str, Any]:
    """Every row of the tables a preview must not touch."""
    with db.connect() as conn:
        rows = {t.name: [tuple(r) for r in conn.execute(select(t).order_by(t.c.id))] for t in (accounts, contacts)}
        for t in (enrollments, ledger, audit_log, tasks):
            rows[t.name] = conn.execute(select(func.count()).select_from(t)).scalar_one()
    return rows


def _files(result: Preview) -> tuple[str, str]:
    html_file, text_file = (Path(f) for f in result.files)
    return html_file.read_text(encoding="utf-8"), text_file.read_text(encoding="utf-8")


def test_every_step_and_locale_is_rendered_for_contacts_of_that_locale_and_role(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    store = Store(db, NOW)
    csm = store.csm(name="Mina Park")
    # Written first (the lowest ids): an account the playbook does not reach today.
    later = store.account(name="Renews Later Co", locale="en", csm_id=csm)
    store.contact(later, "admin")
    renews = (NOW + timedelta(days=90)).date()  # renewal-90d fires 90 days before
    acme = store.account(name="Acme Analytics", locale="en", csm_id=csm, renewal_date=renews)
    a_admin = store.contact(acme, "admin")  # no locale of its own: the account's (en)
    a_champion = store.contact(acme, "champion", locale="en")
    a_billing = store.contact(acme, "billing", locale="en")
    store.contact(acme, "user", locale="en")  # no renewal email goes to users
    hanbit = store.account(name="한빛 소프트", locale="ko", csm_id=csm, renewal_date=renews)
    h_admin = store.contact(hanbit, "admin")  # the account's locale: ko
    h_champion = store.contact(hanbit, "champion", locale="ko")
    h_billing = store.contact(hanbit, "billing")
    h_english = store.contact(hanbit, "admin", locale="en")  # a contact's own locale wins
    people = {a_admin: acme, a_champion: acme, a_billing: acme, h_admin: hanbit, h_champion: hanbit}
    people |= {h_billing: hanbit, h_english: hanbit}
    proj = project(tmp_path, db_url)
    out = tmp_path / "preview"
    before = _snapshot(db)

    with db.connect() as conn:
        report = preview(conn, proj.by_id()["renewal-90d"], proj.renderer, out, samples=3, now=NOW)
    results = report.previews

    assert _snapshot(db) == before
    assert report.notes == []
    # plan goes to admins and champions, notice to billing too; at most `samples` each, by id.
    assert [(r.step, r.locale, r.contact_id) for r in results] == [
        ("plan", "en", a_admin),
        ("plan", "en", a_champion),
        ("plan", "en", h_english),
        ("plan", "ko", h_admin),
        ("plan", "ko", h_champion),
        ("notice", "en", a_admin),
        ("notice", "en", a_champion),
        ("notice", "en", a_billing),
        ("notice", "ko", h_admin),
        ("notice", "ko", h_champion),
        ("notice", "ko", h_billing),
    ]
    with db.connect() as conn:
        renewal = {r.id: r for r in conn.execute(select(accounts.c.id, accounts.c.name, accounts.c.renewal_date))}
    for r in results:
        assert r.error is None
        account = renewal[people[r.contact_id]]
        html, text = _files(r)
        assert Path(r.files[0]).parent == out / "renewal-90d" / r.step
        assert html.lstrip().lower().startswith("<!doctype html>")
        # The real layout around the real customer's data, in the variant's language.
        for needle in (f"Person {r.contact_id}", account.name, account.renewal_date.isoformat()):
            assert needle in html and needle in text, (r, needle)
        assert ("안녕하세요" in html) == (r.locale == "ko")
        assert text.startswith(f"From: Mina Park <mina.park@touchflow.example>\nSubject: {r.subject}\n\n")
        assert r.sender == "Mina Park <mina.park@touchflow.example>" and r.arm is None
        # Every subject names the account, but the English plan's, which names the renewal day.
        day = account.renewal_date
        named = f"{day:%B} {day.day}" if (r.step, r.locale) == ("plan", "en") else account.name
        assert named in r.subject, r
    korean = {r.subject for r in results if r.locale == "ko"}
    assert all("갱신" in subject for subject in korean) and len(korean) == 2  # one per step

    index = (out / "renewal-90d" / "index.html").read_text(encoding="utf-8")
    assert index.count('<iframe sandbox=""') == len(results)
    links = re.findall(r"href='([^']+)'", index)
    assert len(links) == 2 * len(results)
    assert all((out / "renewal-90d" / link).is_file() for link in links)


def test_one_step_for_one_contact_in_every_locale_of_its_template(db: Engine, db_url: str, tmp_path: Path) -> None:
    generate(db, accounts=20, seed=5, now=NOW)
    proj = project(tmp_path, db_url)
    with db.connect() as conn:
        contact = conn.execute(select(contacts).where(contacts.c.id == 1)).one()
        account_name = conn.execute(select(accounts.c.name).where(accounts.c.id == contact.account_id)).scalar_one()
    out = tmp_path / "p"
    with db.connect() as conn:
        results = preview(
            conn, proj.by_id()["renewal-90d"], proj.renderer, out, step="plan", contact_id=1, now=NOW
        ).previews

    # The one contact asked for, in English and in Korean whatever its own locale; no other step.
    assert sorted((r.step, r.locale, r.contact_id) for r in results) == [("plan", "en", 1), ("plan", "ko", 1)]
    for r in results:
        html, _ = _files(r)
        assert r.error is None and contact.name in html and account_name in html
    assert [p.name for p in (out / "renewal-90d").iterdir() if p.is_dir()] == ["plan"]
