"""The health and funnel pages in a real browser (Playwright over the system's Chromium): a
manager signs in, the SVG charts are drawn with a bar per band and per stage and a point per
scored day, and a hostile account name renders as text. Skips without Chromium unless
TOUCHFLOW_REQUIRE_BROWSER=1."""

from __future__ import annotations

from playwright.sync_api import Page

from engine.funnel.load import load_funnel
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
