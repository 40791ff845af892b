"""The console's health and funnel pages over a real store (SQLite and PostgreSQL): the numbers
are the engine's, customer text renders as text, and every empty state is a message, not a 500."""

from __future__ import annotations

import html
import re
from collections import Counter
from datetime import date

from httpx import Response
from sqlalchemy import func, select, update
from starlette.testclient import TestClient

from engine.console.charts import Series, band_trend_chart
from engine.funnel.load import load_funnel
from engine.funnel.report import bottleneck_totals, funnel_report
from engine.health.compute import daily_trend, explain, latest_day, scores_on
from engine.health.load import load_health
from engine.store.models import accounts, health_history
from tests.console.conftest import ConsoleEnv, sign_in
from tests.console.reports_helpers import HOSTILE, name_the_lowest, score_days, with_health_file


def _as_manager(client: TestClient) -> None:
    assert sign_in(client, "manager").status_code == 303  # type: ignore[attr-defined]


def test_without_a_health_model_both_pages_say_so(client: TestClient) -> None:
    _as_manager(client)
    health = client.get("/health")
    assert health.status_code == 200
    assert "No health model: write health.yaml" in health.text
    funnel = client.get("/funnel")
    assert funnel.status_code == 200
    assert "No funnel: health.yaml declares no" in funnel.text


def test_a_model_without_scores_says_a_tick_computes_them(console_env: ConsoleEnv, client: TestClient) -> None:
    with_health_file(console_env)
    _as_manager(client)
    page = client.get("/health")
    assert page.status_code == 200
    assert "No health scores yet" in page.text and "<svg" not in page.text


def test_a_broken_health_file_is_named_on_the_page(console_env: ConsoleEnv, client: TestClient) -> None:
    (console_env.settings.project_dir / "health.yaml").write_text("health: [not, a, model\nfunnel: 3\n")
    _as_manager(client)
    for path in ("/health", "/funnel"):
        page = client.get(path)
        assert page.status_code == 200
        assert "health.yaml cannot be read" in page.text and "Traceback" not in page.text


def _four_scored_days(console_env: ConsoleEnv, client: TestClient) -> tuple[Response, date]:
    """Four days scored by the project's health model, and the health page of the last 30 days
    as a manager sees it, with the latest scored day."""
    with_health_file(console_env)
    score_days(console_env, 4)
    _as_manager(client)
    page = client.get("/health?days=30")
    assert page.status_code == 200
    with console_env.engine.connect() as conn:
        day = latest_day(conn, console_env.now[0])
    assert day is not None
    return page, day


def test_the_distribution_counts_every_band_and_the_trend_has_a_point_per_scored_day(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    page, day = _four_scored_days(console_env, client)
    with console_env.engine.connect() as conn:
        expected = Counter(s.band for s in scores_on(conn, day))
        means = dict(
            conn.execute(
                select(health_history.c.computed_on, func.avg(health_history.c.score)).group_by(
                    health_history.c.computed_on
                )
            ).all()
        )
    assert f"({sum(expected.values())} scored)" in page.text
    bars = re.findall(r'<g class="bar[^"]*" data-key="([^"]+)"><title>[^<]*: (\d+)</title>', page.text)
    assert [b for b, _ in bars] == ["healthy", "at_risk", "unhealthy"]
    assert {b: int(n) for b, n in bars} == {b: expected.get(b, 0) for b in ("healthy", "at_risk", "unhealthy")}
    points = re.findall(r'<circle class="point"[^>]*><title>([0-9-]+): ([0-9.]+)</title>', page.text)
    assert len(points) == 4 == len(means)
    for shown_day, mean in points:
        matching = [float(m) for d, m in means.items() if d.isoformat() == shown_day]
        assert matching and abs(matching[0] - float(mean)) < 0.051
    # A shorter span shows fewer days.
    assert len(re.findall(r'<circle class="point"', client.get("/health?days=2").text)) == 2


def test_an_account_is_explained_as_the_cli_explains_it(console_env: ConsoleEnv, client: TestClient) -> None:
    with_health_file(console_env)
    score_days(console_env, 1)
    account = name_the_lowest(console_env)
    _as_manager(client)
    page = client.get(f"/health?account={account}")
    assert page.status_code == 200
    spec = load_health(console_env.settings.project_dir)
    with console_env.engine.connect() as conn:
        day = latest_day(conn, console_env.now[0])
        assert day is not None
        score = scores_on(conn, day, account_id=account)[0]
    explained = re.search(r'<pre class="text explanation">(.*?)</pre>', page.text, re.S)
    assert explained is not None
    assert html.unescape(explained.group(1)).splitlines() == explain(score, spec)
    assert page.text.count("<tr><td>") == len(score.components)
    shown = re.search(r'<span class="name">(.*?)</span>', page.text, re.S)
    assert shown is not None and html.unescape(shown.group(1)) == HOSTILE
    assert "<script>" not in page.text


def test_hostile_names_and_components_render_as_text(console_env: ConsoleEnv, client: TestClient) -> None:
    with_health_file(console_env)
    score_days(console_env, 1)
    account = name_the_lowest(console_env)
    with console_env.engine.begin() as conn:
        conn.execute(
            update(health_history)
            .where(health_history.c.account_id == account)
            .values(components={"<img src=x>": {"value": "<b>", "points": True, "why": "<script>bad()</script>"},
                                "odd": "not a mapping"})
        )  # fmt: skip
    _as_manager(client)
    overview = client.get("/health")
    assert overview.status_code == 200
    assert "<script>" not in overview.text
    assert "&lt;script&gt;alert(" in overview.text  # the name is listed, as text
    detail = client.get(f"/health?account={account}")
    assert detail.status_code == 200
    assert "<script>" not in detail.text and "<img src=x>" not in detail.text
    assert "&lt;script&gt;bad()&lt;/script&gt;" in detail.text


def test_bad_parameters_and_unknown_accounts_are_named(console_env: ConsoleEnv, client: TestClient) -> None:
    with_health_file(console_env)
    score_days(console_env, 1)
    _as_manager(client)
    bad = client.get("/health?days=x")
    assert bad.status_code == 400 and "not a valid value: days=&#39;x&#39;" in bad.text
    assert client.get("/health?account=-1").status_code == 400
    missing = client.get("/health?account=999999")
    assert missing.status_code == 404 and "account 999999 has no score" in missing.text
    assert client.get("/funnel?by=<script>").status_code == 400
    assert "<script>" not in client.get("/funnel?by=<script>").text
    assert client.get("/funnel?weeks=0").status_code == 400


def test_the_funnel_draws_a_bar_per_stage_and_highlights_the_bottleneck(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    with_health_file(console_env)
    _as_manager(client)
    page = client.get("/funnel?weeks=52")
    assert page.status_code == 200
    path = console_env.settings.project_dir / "health.yaml"
    declared = load_funnel(path)
    assert declared is not None
    stages = [s.id for s in declared.stages]
    with console_env.engine.connect() as conn:
        rows = funnel_report(conn, declared, console_env.now[0], 52)
    worst = bottleneck_totals(rows, stages)
    assert worst is not None, "the demo store has contracts in the last year"
    keys = re.findall(r'<g class="bar[^"]*" data-key="([^"]+)">', page.text)
    assert keys == stages
    assert re.findall(r'<g class="bar highlight" data-key="([^"]+)">', page.text) == [worst[0]]
    assert f'data-stage="{worst[0]}"' in page.text
    weeks = {r.week for r in rows}
    assert page.text.count("<tr><td>") == len(weeks)
    assert page.text.count('<td class="bottleneck"') == len({r.week for r in rows if r.bottleneck})


def test_the_funnel_split_by_tier_shows_each_tier_as_text(console_env: ConsoleEnv, client: TestClient) -> None:
    with_health_file(console_env)
    with console_env.engine.begin() as conn:
        first = conn.execute(select(accounts.c.id).order_by(accounts.c.contract_start.desc())).scalar()
        conn.execute(update(accounts).where(accounts.c.id == first).values(tier="<i>x</i>\"'"))
    _as_manager(client)
    page = client.get("/funnel?weeks=104&by=tier")
    assert page.status_code == 200
    assert "<th>tier</th>" in page.text
    assert "&lt;i&gt;x&lt;/i&gt;" in page.text and "<i>x</i>" not in page.text


def test_the_portfolio_lists_every_csm_as_the_report_counts_them(console_env: ConsoleEnv, client: TestClient) -> None:
    from engine.portfolio.report import portfolios
    from engine.store.models import csms

    with console_env.engine.begin() as conn:
        conn.execute(update(csms).where(csms.c.id == select(func.min(csms.c.id)).scalar_subquery()).values(
            name=HOSTILE))  # fmt: skip
        expected = portfolios(conn, console_env.now[0])
    assert expected, "the demo store has CSMs"
    _as_manager(client)
    page = client.get("/portfolio")
    assert page.status_code == 200
    shown = re.findall(
        r'<tr><td><a href="/portfolio\?csm=\d+">([^<]+)</a><br><span class="meta">(.*?)</span></td><td>(\d+)</td>',
        page.text,
    )
    assert [(html.unescape(e), html.unescape(n), int(a)) for e, n, a in shown] == [
        (p.email, p.name, p.accounts) for p in expected
    ]
    assert "<script>" not in page.text


def _series(page_text: str) -> dict[str, list[tuple[str, int]]]:
    """The band trend chart's series: band key → (day, count) per point, from the SVG's titles."""
    chart = re.search(r'<svg class="band-trend".*?</svg>', page_text, re.S)
    assert chart is not None, "no band trend chart on the page"
    found: dict[str, list[tuple[str, int]]] = {}
    for key, body in re.findall(r'<g class="series" data-key="([^"]*)">(.*?)</g>', chart.group(0), re.S):
        points = re.findall(r'<circle class="band-point"[^>]*><title>[^<]*?([0-9-]{10}): (\d+)</title>', body)
        found[html.unescape(key)] = [(d, int(n)) for d, n in points]
    return found


def test_the_band_trend_chart_draws_a_series_per_band_present_with_the_days_counts(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    page, day = _four_scored_days(console_env, client)
    with console_env.engine.connect() as conn:
        history = daily_trend(conn, day, 30)
    present = {band for d in history for band, n in d.bands.items() if n}
    series = _series(page.text)
    assert set(series) == present and len(series) >= 2, "the demo store scores more than one band"
    assert list(series) == [b for b in ("healthy", "at_risk", "unhealthy") if b in present]  # highest first
    for band, points in series.items():
        assert points == [(d.day.isoformat(), d.bands.get(band, 0)) for d in history]
    # Named for screen readers, with the table of the same numbers right under it.
    chart = re.search(r'<svg class="band-trend"[^>]*aria-labelledby="([^" ]+) ([^"]+)"', page.text)
    assert chart is not None
    assert f'<title id="{chart.group(1)}">' in page.text and f'<desc id="{chart.group(2)}">' in page.text
    assert re.search(r"</svg></div>\s*<table class=\"list trend\">", page.text)
    # The band's label as the page names it elsewhere (health.yaml's label), in the legend.
    assert "At risk" in re.search(r'<svg class="band-trend".*?</svg>', page.text, re.S).group(0)  # type: ignore[union-attr]


def test_a_hostile_band_name_in_the_history_stays_text_in_the_trend_chart(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    with_health_file(console_env)
    score_days(console_env, 2)
    hostile = "<script>x()</script>"
    with console_env.engine.begin() as conn:
        one = conn.execute(select(func.min(health_history.c.account_id))).scalar()
        conn.execute(update(health_history).where(health_history.c.account_id == one).values(band=hostile))
    _as_manager(client)
    page = client.get("/health")
    assert page.status_code == 200
    assert "<script>" not in page.text
    series = _series(page.text)
    assert series[hostile] == [(d, 1) for d, _ in series[hostile]] and len(series[hostile]) == 2


def test_the_band_trend_chart_of_one_day_and_of_no_band_is_still_a_chart() -> None:
    chart = band_trend_chart(["2026-11-02"], [Series("a&b", "<b>A</b>", [3.0], "#188038")], "t<", "chart")
    assert chart.count('<circle class="band-point"') == 1 and "<b>" not in chart and "t&lt;" in chart
    empty = band_trend_chart([], [], "nothing", "empty")
    assert empty.startswith('<svg class="band-trend"') and '<g class="series"' not in empty
    assert "no scored day" in empty
