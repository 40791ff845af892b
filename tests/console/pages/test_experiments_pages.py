"""Experiments in the console, on SQLite and PostgreSQL: each experiment's arms with their rates
and 95 % intervals as a server-side SVG chart, the verdict in words (the report's own), and the
`touchflow experiments promote` command once an arm wins. Roles without reports are refused."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from playwright.sync_api import Page
from sqlalchemy import insert

from engine.experiments.report import experiment_report
from engine.store.models import message_events
from tests.console.pages.conftest import PagesEnv, sign_in
from tests.factories import Store
from tests.journeys.helpers import NOW, ledger_rows, playbook, run_tick

SUBJECTS = playbook(
    "subjects",
    """\
  - id: greet
    email:
      to: {role: [admin]}
      template: welcome/hello
      experiment:
        min_sample: 5
        arms:
          - {id: plain}
          - {id: short, subject: {en: "Hi {{ account.name }}", ko: "안녕하세요 {{ account.name }}"}}
""",
)


def _opened_short(env: PagesEnv, accounts: int = 40) -> dict[str, int]:
    """Sends to `accounts` admins; every message of arm `short` is opened, none of `plain`.
    Returns the messages sent per arm."""
    store = Store(env.engine, NOW)
    for _ in range(accounts):
        store.contact(store.account(plan="subjects"), "admin")
    run_tick(env.engine, env.project, NOW, "t1")
    sent = [r for r in ledger_rows(env.engine, playbook_id="subjects") if r.status == "sent"]
    events = [
        {"send_key": r.send_key, "event": "open", "occurred_at": NOW + timedelta(hours=1)}
        for r in sent
        if r.variant == "short"
    ]
    with env.engine.begin() as conn:
        conn.execute(insert(message_events), events)
    per_arm: dict[str, int] = {}
    for r in sent:
        per_arm[str(r.variant)] = per_arm.get(str(r.variant), 0) + 1
    return per_arm


def test_a_manager_sees_the_arms_intervals_verdict_and_the_promote_command(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env(SUBJECTS)
    per_arm = _opened_short(env)
    assert min(per_arm.values()) >= 5, per_arm
    with env.engine.connect() as conn:
        (result,) = experiment_report(conn, env.project)
    assert result.report.winner == "short"
    base = serve(env.app)
    sign_in(page, base, "manager")
    page.click("header nav a[href='/experiments']")
    section = page.locator("section.experiment[data-playbook='subjects'][data-step='greet']")
    assert section.get_attribute("data-status") == "winner"
    assert section.locator("p.verdict").inner_text() == result.summary
    chart = section.locator("svg.intervals")
    assert chart.count() == 1
    for arm in result.report.arms:  # a bar to the rate and a whisker over the interval per arm
        group = chart.locator(f"g.arm[data-arm='{arm.arm}']")
        assert group.locator("rect.rate").count() == 1 and group.locator("line.ci").count() == 1
        whisker = group.locator("line.ci")
        low, high = float(whisker.get_attribute("x1") or 0), float(whisker.get_attribute("x2") or 0)
        assert low <= high
        assert f"{arm.conversions}/{arm.n}" in (group.locator("title").text_content() or "")
    plain, short = (chart.locator(f"g.arm[data-arm='{a}'] rect.rate") for a in ("plain", "short"))
    assert float(short.get_attribute("width") or 0) > float(plain.get_attribute("width") or 0)
    assert section.locator("pre.promote").inner_text() == "touchflow experiments promote subjects greet short"
    assert page.locator("script").count() == 0


def test_not_enough_data_says_so_and_offers_no_promotion(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env(SUBJECTS)
    _opened_short(env, accounts=4)
    base = serve(env.app)
    sign_in(page, base, "admin")
    page.goto(f"{base}/experiments")
    section = page.locator("section.experiment[data-playbook='subjects']")
    assert section.get_attribute("data-status") == "not_enough_data"
    assert "not enough data" in section.locator("p.verdict").inner_text().lower()
    assert section.locator("pre.promote").count() == 0
    response = page.goto(f"{base}/experiments?metric=nonsense")
    assert response is not None and response.status == 400
    assert "unknown metric 'nonsense'" in page.inner_text("main")


def test_a_viewer_and_a_marketer_are_refused_the_experiments(
    make_env: Callable[..., PagesEnv], serve: Callable[..., str], page: Page
) -> None:
    env = make_env(SUBJECTS)
    base = serve(env.app)
    for role in ("viewer", "marketer"):
        sign_in(page, base, role)
        assert page.locator("header nav a[href='/experiments']").count() == 0
        response = page.goto(f"{base}/experiments")
        assert response is not None and response.status == 403
        page.context.clear_cookies()
