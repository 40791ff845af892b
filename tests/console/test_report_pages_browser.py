"""The health and funnel pages in a real browser (Playwright over the system's Chromium): a
manager signs in, the SVG charts are drawn with a bar per band and per stage, a point per scored
day and a line per band present, a hostile account name renders as text and no script runs; from
the portfolio table a click opens a CSM's accounts. Skips without Chromium unless
TOUCHFLOW_REQUIRE_BROWSER=1."""

from __future__ import annotations

from playwright.sync_api import Page
from sqlalchemy import select, update

from engine.funnel.load import load_funnel
from engine.health.compute import daily_trend, latest_day
from engine.portfolio.report import portfolios
from engine.store.models import accounts
from tests.console.conftest import ConsoleEnv
from tests.console.reports_helpers import HOSTILE, name_the_lowest, score_days, with_health_file
from tests.console.test_browser import _sign_in, base_url, browser, page  # noqa: F401 (fixtures)


def test_a_manager_reads_the_health_and_funnel_charts(
    page: Page,  # noqa: F811
    base_url: str,  # noqa: F811
    console_env: ConsoleEnv,
) -> None:
    with_health_file(console_env)
    score_days(console_env, 3)
    account = name_the_lowest(console_env)
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    _sign_in(page, base_url, "manager")
    page.click("nav >> text=Health")
    page.wait_for_url(f"{base_url}/health")
    assert page.locator("svg.bands g.bar").count() == 3  # healthy, at risk, unhealthy
    assert page.locator("svg.bands g.bar rect").count() == 3
    assert page.locator("svg.line circle.point").count() == 3  # one per scored day
    assert page.locator("svg.line polyline").count() == 1
    # The band trend: a line per band some scored day had, named for screen readers, a table under it.
    with console_env.engine.connect() as conn:
        day = latest_day(conn, console_env.now[0])
        assert day is not None
        present = {b for d in daily_trend(conn, day, 30) for b, n in d.bands.items() if n}
    series = page.locator("svg.band-trend g.series")
    assert {s.get_attribute("data-key") for s in series.all()} == present and series.count() == len(present)
    assert page.locator("svg.band-trend g.series circle.band-point").count() == 3 * len(present)
    assert page.locator("svg.band-trend").get_attribute("role") == "img"
    assert "scored days" in page.locator("svg.band-trend desc").text_content()  # type: ignore[operator]
    assert page.locator("svg.band-trend script, svg.band-trend foreignObject").count() == 0
    assert page.locator("div.chart:has(svg.band-trend) + table.trend").count() == 1
    assert page.locator("table.lowest td.name").first.inner_text() == HOSTILE
    assert page.locator("table.lowest script").count() == 0
    page.click(f"table.lowest a[href='/health?account={account}']")
    assert page.locator("span.name").inner_text() == HOSTILE
    assert "score:" in page.locator("pre.explanation").inner_text()

    page.click("nav >> text=Funnel")
    page.wait_for_url(f"{base_url}/funnel")
    page.fill("input[name=weeks]", "52")  # the demo's contracts started over the last year
    with page.expect_navigation():
        page.click("main button[type=submit]")
    declared = load_funnel(console_env.settings.project_dir / "health.yaml")
    assert declared is not None
    bars = page.locator("svg.funnel g.bar")
    assert bars.count() == len(declared.stages)
    assert [b.get_attribute("data-key") for b in bars.all()] == [s.id for s in declared.stages]
    highlighted = page.locator("svg.funnel g.bar.highlight")
    assert highlighted.count() == 1
    assert highlighted.get_attribute("data-key") == page.locator("strong.bottleneck").get_attribute("data-stage")
    assert page.locator("table.funnel td.bottleneck").count() >= 1
    assert dialogs == []  # no script of the hostile name ran


def test_a_manager_clicks_from_the_portfolio_into_a_csms_accounts(
    page: Page,  # noqa: F811
    base_url: str,  # noqa: F811
    console_env: ConsoleEnv,
) -> None:
    with_health_file(console_env)
    score_days(console_env, 1)
    with console_env.engine.begin() as conn:
        first = next(p for p in portfolios(conn, console_env.now[0]) if p.accounts)
        owned = (
            conn.execute(select(accounts.c.id).where(accounts.c.csm_id == first.csm_id, accounts.c.status == "active"))
            .scalars()
            .first()
        )
        conn.execute(update(accounts).where(accounts.c.id == owned).values(name=HOSTILE))
        (expected,) = portfolios(conn, console_env.now[0], first.csm_id)
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    _sign_in(page, base_url, "manager")
    page.click("nav >> text=Portfolios")
    page.wait_for_url(f"{base_url}/portfolio")
    with page.expect_navigation():
        page.click(f"table.portfolio a[href='/portfolio?csm={first.csm_id}']")
    assert page.url == f"{base_url}/portfolio?csm={first.csm_id}"
    assert first.email in page.locator("h1").inner_text()
    rows = page.locator("table.accounts tbody tr")
    assert [r.get_attribute("data-account") for r in rows.all()] == [str(h.account_id) for h in expected.book]
    assert page.locator(f"tr[data-account='{owned}'] td.name").inner_text() == HOSTILE
    assert page.locator("table.accounts script").count() == 0
    page.click("text=← every CSM's portfolio")
    page.wait_for_url(f"{base_url}/portfolio")
    assert dialogs == []
