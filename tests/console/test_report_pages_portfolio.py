"""The console's portfolio drill-down over a real store (SQLite and PostgreSQL): each CSM row links
to `/portfolio?csm=ID`, which lists that CSM's accounts with what `touchflow portfolio --csm`
shows per account — from the same `engine.portfolio.report.portfolios` call —; a CSM id that is
unknown is a 404 naming the valid ones, one that is not an id a 400, and only `reports` roles
may open it."""

from __future__ import annotations

import html
import re
from datetime import timedelta

from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from engine.health.compute import latest_day
from engine.portfolio.report import Portfolio, portfolios
from engine.store.models import accounts, csms, health_history
from tests.console.conftest import ConsoleEnv, sign_in
from tests.console.reports_helpers import HOSTILE, score_days, with_health_file

ROW = re.compile(
    r'<tr data-account="(\d+)"( class="at-risk")?><td>.*?</td><td class="name">(.*?)</td>'
    r"<td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td>",
    re.S,
)


def _as(client: TestClient, role: str) -> None:
    assert sign_in(client, role).status_code == 303  # type: ignore[attr-defined]


def _busiest(env: ConsoleEnv) -> int:
    """The id of the CSM owning the most active accounts."""
    with env.engine.connect() as conn:
        return int(
            conn.execute(
                select(accounts.c.csm_id)
                .where(accounts.c.status == "active", accounts.c.csm_id.is_not(None))
                .group_by(accounts.c.csm_id)
                .order_by(func.count().desc(), accounts.c.csm_id)
            ).first()[0]  # type: ignore[index]
        )


def _one(env: ConsoleEnv, csm_id: int) -> Portfolio:
    with env.engine.connect() as conn:
        (found,) = portfolios(conn, env.now[0], csm_id)
    return found


def test_each_csm_row_of_the_portfolio_links_to_its_drill_down(console_env: ConsoleEnv, client: TestClient) -> None:
    with console_env.engine.connect() as conn:
        expected = portfolios(conn, console_env.now[0])
    _as(client, "manager")
    page = client.get("/portfolio")
    assert page.status_code == 200
    assert re.findall(r'<a href="/portfolio\?csm=(\d+)">', page.text) == [str(p.csm_id) for p in expected]


def test_the_drill_down_lists_every_account_of_the_csm_as_the_report_does(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    with_health_file(console_env)
    score_days(console_env, 2)
    csm_id = _busiest(console_env)
    with console_env.engine.begin() as conn:
        owned = [
            int(i)
            for i in conn.execute(
                select(accounts.c.id)
                .where(accounts.c.csm_id == csm_id, accounts.c.status == "active")
                .order_by(accounts.c.id)
            ).scalars()
        ]
        # One account renewing in 30 days and at risk today; another with a hostile name.
        day = latest_day(conn, console_env.now[0])
        soon = (console_env.now[0] + timedelta(days=30)).date()
        later = (console_env.now[0] + timedelta(days=200)).date()
        conn.execute(update(accounts).where(accounts.c.id.in_(owned[1:])).values(renewal_date=later))
        conn.execute(update(accounts).where(accounts.c.id == owned[0]).values(renewal_date=soon))
        conn.execute(
            update(health_history)
            .where(health_history.c.account_id == owned[0], health_history.c.computed_on == day)
            .values(band="at_risk", score=55.0)
        )
        conn.execute(update(accounts).where(accounts.c.id == owned[-1]).values(name=HOSTILE))
    expected = _one(console_env, csm_id)
    assert [a.account_id for a in expected.at_risk_renewing] == [owned[0]]
    _as(client, "manager")
    page = client.get(f"/portfolio?csm={csm_id}")
    assert page.status_code == 200
    shown = ROW.findall(page.text)
    assert len(shown) == expected.accounts == len(owned)
    assert [
        (int(i), bool(risk), html.unescape(name), renews, arr, score, band)
        for i, risk, name, renews, arr, score, band in shown
    ] == [
        (
            h.account_id,
            h.account_id == owned[0],
            h.name,
            h.renewal_date or "",
            f"{h.arr:,.0f}",
            "" if h.score is None else f"{h.score:g}",
            h.band or "",
        )
        for h in expected.book
    ]
    assert html.unescape(expected.email) in html.unescape(page.text)
    assert expected.summary in html.unescape(page.text)
    reasons = re.findall(r'<tr class="reason"><td>(.*?)</td><td>(\d+)</td><td>(\d+)</td></tr>', page.text)
    assert [(html.unescape(r), int(o), int(c)) for r, o, c in reasons] == [
        (r.reason, r.opened, r.closed) for r in expected.by_reason
    ]
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    assert 'href="/portfolio"' in page.text  # back to every CSM


def test_a_csm_without_accounts_gets_an_empty_list_not_an_error(console_env: ConsoleEnv, client: TestClient) -> None:
    with console_env.engine.begin() as conn:
        lonely = int(conn.execute(select(func.max(csms.c.id))).scalar_one())
        conn.execute(update(accounts).where(accounts.c.csm_id == lonely).values(csm_id=None))
    _as(client, "manager")
    page = client.get(f"/portfolio?csm={lonely}")
    assert page.status_code == 200
    assert ROW.findall(page.text) == [] and "owns no active account" in page.text


def test_an_unknown_csm_is_a_404_naming_the_valid_ones_and_a_bad_id_a_400(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    with console_env.engine.connect() as conn:
        ids = [str(i) for i in conn.execute(select(csms.c.id).order_by(csms.c.email, csms.c.id)).scalars()]
    _as(client, "manager")
    missing = client.get("/portfolio?csm=999999")
    assert missing.status_code == 404
    assert "no CSM with id 999999" in missing.text
    assert re.findall(r'<a href="/portfolio\?csm=(\d+)">', missing.text) == ids
    for bad in ("abc", "-1", "0", "1.5", "99999999999999999999", "<script>"):
        answer = client.get("/portfolio", params={"csm": bad})
        assert answer.status_code == 400, bad
        assert "not a CSM id" in answer.text and "<script>" not in answer.text
        assert re.findall(r'<a href="/portfolio\?csm=(\d+)">', answer.text) == ids
    assert client.get("/portfolio?csm=").status_code == 200  # empty: every CSM


def test_only_reports_roles_open_a_drill_down(console_env: ConsoleEnv, client: TestClient) -> None:
    csm_id = _busiest(console_env)
    for role, status in (("viewer", 403), ("marketer", 403), ("admin", 200), ("manager", 200)):
        _as(client, role)
        assert client.get(f"/portfolio?csm={csm_id}").status_code == status, role
