"""`preview` renders every email step × locale for sample contacts, and changes nothing."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, func, select

from engine.preview import preview
from engine.store.demo_data import generate
from engine.store.models import audit_log, enrollments, ledger
from tests.factories import project

NOW = datetime(2026, 11, 23)


def test_every_step_and_locale_is_rendered(db: Engine, db_url: str, tmp_path: Path) -> None:
    generate(db, accounts=200, seed=5, now=NOW)
    proj = project(tmp_path, db_url)
    out = tmp_path / "preview"
    with db.connect() as conn:
        results = preview(conn, proj.by_id()["renewal-90d"], proj.renderer, out, samples=2)
        assert [
            conn.execute(select(func.count()).select_from(t)).scalar_one() for t in (enrollments, ledger, audit_log)
        ] == [0, 0, 0]
    assert {(r.step, r.locale) for r in results} == {("plan", "en"), ("plan", "ko"), ("notice", "en"), ("notice", "ko")}
    assert all(r.error is None and r.subject for r in results)
    korean = [r for r in results if r.locale == "ko"]
    assert all("갱신" in r.subject for r in korean)
    for r in results:
        html_file, text_file = (Path(f) for f in r.files)
        assert html_file.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") or "<html" in html_file.read_text(
            encoding="utf-8"
        )
        assert text_file.read_text(encoding="utf-8").startswith(f"Subject: {r.subject}\n")
    index = (out / "renewal-90d" / "index.html").read_text(encoding="utf-8")
    assert index.count("<tr>") == len(results) + 1


def test_one_step_for_one_contact(db: Engine, db_url: str, tmp_path: Path) -> None:
    generate(db, accounts=20, seed=5, now=NOW)
    proj = project(tmp_path, db_url)
    results = []
    with db.connect() as conn:
        results = preview(conn, proj.by_id()["renewal-90d"], proj.renderer, tmp_path / "p", step="plan", contact_id=1)
    assert {r.contact_id for r in results} == {1} and {r.step for r in results} == {"plan"}
