"""`touchflow experiments`: an experiment run end to end, then measured (SQLite and PostgreSQL).

One tick of a one-step email playbook with arms a, b and a holdout sends to ~300 accounts; the
test then writes what the provider would report (opens, clicks, bounces, unsubscribes) and marks
enrollments converted, inside and outside the goal's `within`, and checks every count of the
report against numbers worked out here from those choices, and every statistic against
`stats.compare` on the same counts.
"""

from __future__ import annotations

import csv
import email
import email.policy
import io
import json
import shutil
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, insert, select, update
from typer.testing import CliRunner, Result

from engine import tick
from engine.cli.main import app
from engine.dispatch import OutboxChannel
from engine.experiments.assign import assign
from engine.experiments.report import (
    EMAIL_METRICS,
    FIELDS,
    NO_COMPARISON,
    ArmMetrics,
    ExperimentResult,
    ReportError,
    compare_arms,
    experiment_report,
)
from engine.experiments.stats import ArmCounts, compare, format_percent
from engine.load import load_playbook
from engine.project import Project
from engine.spec import EmailStep
from engine.spec.steps import METRICS, Experiment
from engine.store.db import connect, migrate
from engine.store.models import accounts, audit_log, contacts, enrollments, ledger, message_events
from engine.webhooks.unsubscribe import unsubscribe
from tests.conftest import _pg_or_skip, migrated_pg_schema
from tests.factories import project

NOW = datetime(2026, 11, 2, 9, 0)  # a Monday, 09:00 UTC (09:00 in London)
ACCOUNTS = 300
MIN_SAMPLE = 50

EXP = """\
id: exp
name: Experiment journey
trigger: {plan: exp}
goal: {event: upgraded, within: 7d}
steps:
  - id: hello
    email:
      to: {role: [admin]}
      template: exp/hello
      experiment:
        metric: opened
        min_sample: 50
        arms:
          - {id: a, weight: 45}
          - id: b
            weight: 45
            subject: "{{ account.name }}: arm b"
          - {id: holdout, weight: 10, holdout: true}
"""

QUIET = """\
id: quiet
name: Nobody enters yet
trigger: {plan: nobody}
steps:
  - wait: 1d
  - email:
      to: {role: [admin]}
      template: exp/hello
      experiment:
        id: quiet-test
        metric: clicked
        control: y
        arms:
          - {id: x}
          - {id: y}
"""

PLAIN = """\
id: plain
name: No experiment here
trigger: {plan: plain}
steps:
  - email: {to: {role: [admin]}, template: exp/hello}
"""

TEMPLATE = (
    '{% extends "_layout.html" %}{% block subject %}Hello {{ account.name }}{% endblock %}'
    "{% block content %}<p>Hi {{ contact.name }}</p>{% endblock %}"
)


@dataclass
class Scenario:
    """The store after the tick and the provider's events, and what the report must say."""

    url: str
    engine: Engine
    project: Project
    experiment: Experiment
    rows: list[Any]  # the ledger rows of step `hello`
    expected: dict[str, ArmMetrics]
    invalid_contact: int


# --- building the scenario -----------------------------------------------------------------------


def _store(engine: Engine, experiment: Experiment) -> int:
    """300 accounts on plan `exp`, one admin each (every tenth has two, one address is invalid)."""
    account_rows, contact_rows = [], []
    invalid = None
    for i in range(1, ACCOUNTS + 1):
        account_rows.append(
            {
                "id": i,
                "name": f"Co {i:03d}",
                "tier": "tech_touch",
                "plan": "exp",
                "arr": 9000.0,
                "seats_purchased": 10,
                "lifecycle_stage": "adoption",
                "contract_start": date(2025, 1, 1),
                "renewal_date": date(2027, 6, 1),
                "csm_id": None,
                "status": "active",
                "timezone": "Europe/London",
                "locale": "en",
                "traits": {},
            }
        )
        admins = 2 if i % 10 == 0 else 1
        for k in range(admins):
            cid = 1000 * k + 1000 + i
            address = f"person{cid}@acme.example"
            if invalid is None and admins == 1 and assign(experiment, "exp.hello", f"account:{i}").id == "a":
                invalid, address = cid, "not-an-address"
            contact_rows.append(
                {
                    "id": cid,
                    "account_id": i,
                    "email": address,
                    "name": f"Person {cid}",
                    "role": "admin",
                    "timezone": None,
                    "locale": None,
                    "traits": {},
                }
            )
        contact_rows.append(  # not a recipient: the step writes to admins
            {
                "id": 5000 + i,
                "account_id": i,
                "email": f"user{i}@acme.example",
                "name": "A User",
                "role": "user",
                "timezone": None,
                "locale": None,
                "traits": {},
            }
        )
    with engine.begin() as conn:
        conn.execute(insert(accounts), account_rows)
        conn.execute(insert(contacts), contact_rows)
    assert invalid is not None
    return invalid


def _provider_events(engine: Engine, rows: list[Any]) -> dict[str, dict[str, set[str]]]:
    """Write opens, clicks, bounces and unsubscribes for chosen messages; return, per arm and
    metric, the send keys that must count."""
    sent = {arm: sorted(r.send_key for r in rows if r.variant == arm and r.status == "sent") for arm in ("a", "b")}
    held = sorted(r.send_key for r in rows if r.status == "held_out")
    A, B = sent["a"], sent["b"]
    events: list[tuple[str, str]] = []
    want: dict[str, dict[str, set[str]]] = {arm: defaultdict(set) for arm in ("a", "b")}

    def add(arm: str, metric: str | None, keys: list[str], name: str) -> None:
        for key in keys:
            events.append((key, name))
            if metric is not None:
                want[arm][metric].add(key)

    add("a", "bounced", A[0:3], "bounce")
    add("a", "bounced", A[3:4], "dropped")
    add("b", "bounced", B[0:1], "bounce")
    add("a", "delivered", A[4:], "delivered")
    add("b", "delivered", B[1:], "delivered")
    add("a", "opened", A[10:30], "open")
    add("a", "opened", A[10:12], "open")  # opened twice: one message
    add("b", "opened", B[10:50], "open")
    add("a", "clicked", A[10:15], "click")
    add("a", "clicked", A[60:61], "click")  # a click without an open (images off)
    add("b", "clicked", B[10:25], "click")
    add("a", "unsubscribed", A[11:12], "unsubscribe")
    add("a", "unsubscribed", A[12:13], "group_unsubscribe")
    add("b", "unsubscribed", B[12:13], "unsubscribe")  # ... and the link too: still one message
    add("a", None, A[20:25], "processed")  # counts for nothing
    add("a", None, A[20:22], "deferred")
    add("b", None, B[30:31], "spamreport")
    add("b", None, held[:3], "open")  # a holdout row was never sent: its events cannot count
    add("b", None, ["f" * 32], "open")  # no such message
    with engine.begin() as conn:
        conn.execute(
            insert(message_events),
            [
                {"send_key": key, "event": name, "occurred_at": NOW + timedelta(hours=1 + n % 5), "payload": {}}
                for n, (key, name) in enumerate(events)
            ],
        )
        # The signed unsubscribe link writes a suppression and an audit row, no message event.
        for key in (B[11], B[12]):
            assert unsubscribe(conn, key, NOW + timedelta(hours=2), "unsubscribe-link/test") is not None
    want["b"]["unsubscribed"].update([B[11], B[12]])
    return want


def _conversions(engine: Engine, rows: list[Any]) -> dict[str, int]:
    """Mark enrollments converted inside and outside the goal's `within` (7 days); return how many
    of each arm must count."""
    by_arm: dict[str, list[int]] = defaultdict(list)
    for r in rows:
        if r.enrollment_id not in by_arm[r.variant]:
            by_arm[r.variant].append(r.enrollment_id)
    plan = {  # arm → (converted within 7 days, exactly at 7 days, after 7 days, exited)
        "a": (8, 0, 3, 2),
        "b": (15, 1, 2, 0),
        "holdout": (2, 0, 1, 1),
    }
    changes: list[tuple[int, str, timedelta]] = []
    for arm, (inside, edge, outside, exited) in plan.items():
        ids = sorted(by_arm[arm])
        cuts = [inside, inside + edge, inside + edge + outside, inside + edge + outside + exited]
        changes += [(i, "converted", timedelta(days=3)) for i in ids[: cuts[0]]]
        changes += [(i, "converted", timedelta(days=7)) for i in ids[cuts[0] : cuts[1]]]
        changes += [(i, "converted", timedelta(days=10)) for i in ids[cuts[1] : cuts[2]]]
        changes += [(i, "exited", timedelta(days=1)) for i in ids[cuts[2] : cuts[3]]]
    with engine.begin() as conn:
        enrolled_at = dict(conn.execute(select(enrollments.c.id, enrollments.c.enrolled_at)).all())
        for enrollment_id, status, after in changes:
            conn.execute(
                update(enrollments)
                .where(enrollments.c.id == enrollment_id)
                .values(status=status, ended_at=enrolled_at[enrollment_id] + after)
            )
    return {arm: inside + edge for arm, (inside, edge, _, _) in plan.items()}


def _build(url: str, root: Path) -> Scenario:
    engine = connect(url)
    proj = project(
        root,
        url,
        playbooks={"exp": EXP, "quiet": QUIET, "plain": PLAIN},
        templates={"exp/hello.en.html": TEMPLATE},
    )
    spec = proj.by_id()["exp"].steps[0].spec
    assert isinstance(spec, EmailStep) and spec.email.experiment is not None
    experiment = spec.email.experiment
    invalid = _store(engine, experiment)
    tick.run_stages(engine, proj, [p.id for p in proj.active()], NOW, "tick", OutboxChannel(proj.settings.outbox_dir))
    with engine.connect() as conn:
        rows = list(
            conn.execute(select(ledger).where(ledger.c.playbook_id == "exp", ledger.c.step_id == "hello")).all()
        )
    want = _provider_events(engine, rows)
    converted = _conversions(engine, rows)
    expected = {}
    # Counted in subjects (the unit arms are assigned by): a subject counts once however many of
    # its recipients opened, and `sent` is the subjects mailed.
    subject_of = {r.send_key: r.enrollment_id for r in rows}
    for arm in experiment.arms:
        mine = [r for r in rows if r.variant == arm.id]
        counts = {m: len({subject_of[k] for k in want[arm.id][m]}) if arm.id in want else 0 for m in EMAIL_METRICS}
        expected[arm.id] = ArmMetrics(
            arm=arm.id,
            holdout=arm.holdout,
            is_control=arm.id == "a",
            enrolled=len({r.enrollment_id for r in mine}),
            sent=len({r.enrollment_id for r in mine if r.status == "sent"}),
            converted=converted[arm.id],
            **counts,
        )
    return Scenario(url, engine, proj, experiment, rows, expected, invalid)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    root = tmp_path_factory.mktemp(f"experiments-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{root / 'store.db'}"
        engine = connect(url)
        migrate(engine)
        engine.dispose()
        built = _build(url, root)
        yield built
        built.engine.dispose()
        return
    with migrated_pg_schema(_pg_or_skip(), "tx") as url:
        built = _build(url, root)
        yield built
        built.engine.dispose()


def _report(s: Scenario, playbook: str | None = "exp", metric: str | None = None) -> list[ExperimentResult]:
    with s.engine.connect() as conn:
        return experiment_report(conn, s.project, playbook, metric)


# --- what the tick planned and sent --------------------------------------------------------------


def test_every_recipient_has_the_arm_of_its_account(scenario: Scenario) -> None:
    rows = scenario.rows
    admins = ACCOUNTS + ACCOUNTS // 10
    assert len(rows) == admins  # one row per admin; users are not recipients
    for r in rows:
        assert r.variant == assign(scenario.experiment, "exp.hello", f"account:{r.account_id}").id
    shares = Counter(r.variant for r in rows)
    assert set(shares) == {"a", "b", "holdout"}
    assert 0.05 < shares["holdout"] / len(rows) < 0.16  # weight 10 of 100
    statuses = Counter((r.variant, r.status) for r in rows)
    assert statuses["a", "skipped"] == 1  # the invalid address
    assert {s for (v, s) in statuses if v == "holdout"} == {"held_out"}
    assert {s for (v, s) in statuses if v != "holdout"} <= {"sent", "skipped"}
    assert sum(n for (v, s), n in statuses.items() if s == "skipped") == 1
    (skipped,) = [r for r in rows if r.status == "skipped"]
    assert skipped.contact_id == scenario.invalid_contact


def test_holdout_rows_send_nothing_and_are_audited(scenario: Scenario) -> None:
    held = {r.send_key for r in scenario.rows if r.variant == "holdout"}
    assert all(r.payload == {} for r in scenario.rows if r.variant == "holdout")
    with scenario.engine.connect() as conn:
        audits = conn.execute(select(audit_log).where(audit_log.c.reason == "holdout")).all()
    assert {a.send_key for a in audits} == held
    assert all((a.decision, a.variant, a.step_id) == ("skipped", "holdout", "hello") for a in audits)
    assert all(a.contact_id is not None for a in audits)
    outbox = scenario.project.settings.outbox_dir
    assert not [k for k in held if (outbox / f"{k}.eml").exists()]


def test_each_arm_sends_its_own_subject(scenario: Scenario) -> None:
    outbox = scenario.project.settings.outbox_dir
    sent = [r for r in scenario.rows if r.status == "sent"]
    assert len(list(outbox.glob("*.eml"))) == len(sent)
    for r in sent:
        message = email.message_from_bytes((outbox / f"{r.send_key}.eml").read_bytes(), policy=email.policy.default)
        name = f"Co {r.account_id:03d}"
        assert message["Subject"] == (f"{name}: arm b" if r.variant == "b" else f"Hello {name}")
        assert ("subject" in r.payload) == (r.variant == "b")


def test_dispatch_audit_rows_carry_the_variant(scenario: Scenario) -> None:
    variant = {r.send_key: r.variant for r in scenario.rows if r.status == "sent"}
    with scenario.engine.connect() as conn:
        audits = conn.execute(
            select(audit_log.c.send_key, audit_log.c.variant).where(audit_log.c.decision == "sent")
        ).all()
    assert {a.send_key for a in audits} == set(variant)
    assert all(a.variant == variant[a.send_key] for a in audits)


def test_a_recipient_skipped_at_planning_is_audited_with_its_arm(scenario: Scenario) -> None:
    (skipped,) = [r for r in scenario.rows if r.status == "skipped"]
    with scenario.engine.connect() as conn:
        (audit,) = conn.execute(select(audit_log).where(audit_log.c.send_key == skipped.send_key)).all()
    assert (audit.decision, audit.reason) == ("skipped", "invalid_email")
    assert audit.variant == skipped.variant == "a"


# --- the report ----------------------------------------------------------------------------------


def test_report_counts_every_metric_per_arm(scenario: Scenario) -> None:
    (result,) = _report(scenario)
    assert {a.arm: a for a in result.arms} == scenario.expected
    assert [a.arm for a in result.arms] == ["a", "b", "holdout"]
    expected = scenario.expected
    # The numbers the scenario was built to produce, written out once for the reader. They count
    # subjects: 40 of b's messages were opened, but two of its accounts had two openers each.
    assert expected["a"].bounced == 4 and expected["b"].bounced == 1
    assert expected["a"].opened == 20 and expected["b"].opened == 38
    assert expected["a"].clicked == 6 and expected["b"].clicked == 14
    assert expected["a"].unsubscribed == 2 and expected["b"].unsubscribed == 2
    assert expected["a"].delivered == expected["a"].sent - 4
    assert (expected["a"].converted, expected["b"].converted, expected["holdout"].converted) == (8, 16, 2)
    assert expected["holdout"].sent == 0 and expected["holdout"].opened == 0
    # Sent counts subjects mailed, like enrolled: every tenth account has two admins (still one
    # subject), and the one account whose only address is invalid was never mailed.
    messages = sum(r.variant == "a" and r.status == "sent" for r in scenario.rows)
    twos = {r.account_id for r in scenario.rows if r.variant == "a" and r.account_id % 10 == 0}
    assert expected["a"].sent == expected["a"].enrolled - 1
    assert messages == expected["a"].enrolled + len(twos) - 1
    assert sum(e.enrolled for e in expected.values()) == ACCOUNTS


def test_report_statistics_are_stats_compare_on_the_same_counts(scenario: Scenario) -> None:
    results = _report(scenario, metric="all")
    assert [r.metric for r in results] == ["opened", *(m for m in METRICS if m != "opened")]
    expected = scenario.expected
    for result in results:
        m = result.metric
        arms = [a for a in expected.values() if not (a.holdout and m in EMAIL_METRICS)]
        counts = [
            ArmCounts(a.arm, a.enrolled if m == "converted" else a.sent, getattr(a, m), a.arm == "a", a.holdout)
            for a in arms
        ]
        assert result.report == compare(counts, m, 0.05, MIN_SAMPLE), m
        rows = result.rows()
        assert [r["arm"] for r in rows] == [a.arm for a in arms]
        for row, arm, c in zip(rows, result.report.arms, counts, strict=True):
            assert set(row) == set(FIELDS)
            assert (row["n"], row["conversions"]) == (c.n, c.conversions)
            assert row["rate"] == (c.conversions / c.n if c.n else 0.0)
            assert (row["ci_low"], row["ci_high"]) == (arm.ci_low, arm.ci_high)
            assert (row["p_value"], row["p_value_holm"], row["lift_abs"]) == (
                arm.p_value,
                arm.p_value_holm,
                arm.lift_abs,
            )
            assert (row["playbook"], row["step"], row["experiment"], row["metric"]) == ("exp", "hello", "exp.hello", m)
            assert row["declared"] == (m == "opened")
            assert (row["status"], row["summary"]) == (result.report.status, result.report.summary)
    by_metric = {r.metric: r for r in results}
    # Email metrics are over messages sent and leave the holdout out; converted is over enrolled and keeps it.
    assert [r["n"] for r in by_metric["opened"].rows()] == [expected["a"].sent, expected["b"].sent]
    converted = by_metric["converted"].rows()
    assert [r["n"] for r in converted] == [expected[a].enrolled for a in ("a", "b", "holdout")]
    assert converted[2]["holdout"] is True
    # With these counts b's subject line wins on opens; the holdout has too few subjects for a verdict.
    assert (by_metric["opened"].report.status, by_metric["opened"].report.winner) == ("winner", "b")
    assert by_metric["converted"].report.status == "not_enough_data"


def test_report_uses_a_few_statements_whatever_the_rows(scenario: Scenario) -> None:
    statements: list[str] = []

    def count(*args: Any) -> None:
        statements.append(args[2])

    event.listen(scenario.engine, "before_cursor_execute", count)
    try:
        results = _report(scenario, metric="all")
    finally:
        event.remove(scenario.engine, "before_cursor_execute", count)
    assert len(results) == len(METRICS)
    assert len(statements) == 2  # one experiment: people (enrolled, sent, converted) and message events


def test_report_of_every_playbook(scenario: Scenario) -> None:
    results = _report(scenario, playbook=None)
    assert [(r.playbook, r.step, r.experiment, r.metric) for r in results] == [
        ("exp", "hello", "exp.hello", "opened"),
        ("quiet", "email-exp-hello", "quiet-test", "clicked"),
    ]
    quiet = results[1]
    # Arms written in the playbook but without rows yet: there, with n = 0.
    assert [(a.arm, a.is_control, a.enrolled, a.sent) for a in quiet.arms] == [("x", False, 0, 0), ("y", True, 0, 0)]
    assert [(r["arm"], r["is_control"], r["n"]) for r in quiet.rows()] == [("x", False, 0), ("y", True, 0)]
    assert quiet.report.status == "not_enough_data" and quiet.control == "y"


def test_report_asks(scenario: Scenario) -> None:
    assert _report(scenario, playbook="plain") == []
    assert [r.metric for r in _report(scenario, metric="converted")] == ["converted"]
    with pytest.raises(ReportError, match=r"no playbook 'epx' \(did you mean 'exp'\?\); known: exp, plain, quiet"):
        _report(scenario, playbook="epx")
    with pytest.raises(ReportError, match=r"unknown metric 'open' \(did you mean 'opened'\?\)"):
        _report(scenario, metric="open")


# --- the command ---------------------------------------------------------------------------------


def _cli(s: Scenario, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(s.project.settings.project_dir))
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", s.url)
    return CliRunner().invoke(app, ["experiments", *args])


def test_cli_json_is_one_object_per_arm(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _cli(scenario, monkeypatch, "exp", "--format", "json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    (report,) = _report(scenario)
    assert lines == report.rows()
    assert [(r["arm"], r["metric"]) for r in lines] == [("a", "opened"), ("b", "opened")]


def test_cli_csv_of_every_metric(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _cli(scenario, monkeypatch, "--metric", "all", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == FIELDS
    # exp: 5 email metrics x 2 sending arms + converted x 3; quiet: 6 metrics x 2 arms.
    assert len(rows) == 5 * 2 + 3 + 6 * 2
    holdout = [r for r in rows if r["arm"] == "holdout"]
    assert [(r["metric"], r["n"], r["holdout"]) for r in holdout] == [
        ("converted", str(scenario.expected["holdout"].enrolled), "True")
    ]
    control = next(r for r in rows if r["arm"] == "a" and r["metric"] == "opened")
    assert control["p_value"] == "" and control["is_control"] == "True"


def test_cli_table_for_a_marketer(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    result = _cli(scenario, monkeypatch, "exp")
    assert result.exit_code == 0, result.output
    text = result.stdout
    (report,) = _report(scenario)
    assert "exp / hello — experiment exp.hello: opened (the experiment's metric)" in text
    assert report.summary in text
    assert report.summary.startswith("Arm b wins:")
    for header in ("arm", "conversions", "95% CI", "lift vs control", "p (Holm)", "verdict"):
        assert header in text
    a, b = scenario.expected["a"], scenario.expected["b"]
    assert format_percent(b.opened / b.sent) in text
    assert "a (control)" in text and "holdout (holdout)" in text  # the holdout shows in the second table
    assert "every metric per arm" in text
    assert format_percent(a.bounced / a.sent) in text
    assert format_percent(scenario.expected["holdout"].converted / scenario.expected["holdout"].enrolled) in text


def test_cli_says_what_is_wrong(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    unknown = _cli(scenario, monkeypatch, "nope")
    assert unknown.exit_code == 2 and "no playbook 'nope'" in unknown.output
    plain = _cli(scenario, monkeypatch, "plain")
    assert plain.exit_code == 0 and "playbook 'plain' has no email step with an experiment" in plain.output
    assert _cli(scenario, monkeypatch, "exp", "--format", "xml").exit_code == 2
    bad_metric = _cli(scenario, monkeypatch, "--metric", "opens")
    assert bad_metric.exit_code == 2 and "--metric must be one of" in bad_metric.output
    two = _cli(scenario, monkeypatch, "exp", "quiet")
    assert two.exit_code == 2 and "at most one playbook" in two.output


# --- pure: comparisons the scenario does not reach -----------------------------------------------


def _experiment(arms: list[dict[str, Any]], **kw: Any) -> Experiment:
    return Experiment.model_validate({"arms": arms, "min_sample": 10, **kw})


def test_a_holdout_control_is_replaced_by_the_first_sending_arm_for_email_metrics() -> None:
    exp = _experiment([{"id": "none", "holdout": True}, {"id": "a"}, {"id": "b"}], metric="converted")
    arms = [
        ArmMetrics("none", holdout=True, is_control=True, enrolled=40, converted=4),
        ArmMetrics("a", enrolled=40, sent=40, opened=10, converted=8),
        ArmMetrics("b", enrolled=40, sent=40, opened=20, converted=9),
    ]
    opened = compare_arms("p", "s", "p.s", exp, arms, "opened")
    assert opened.control == "a"
    assert [(r["arm"], r["is_control"]) for r in opened.rows()] == [("a", True), ("b", False)]
    assert "arm a stands in as the control" in opened.summary
    assert opened.report == compare([ArmCounts("a", 40, 10, True), ArmCounts("b", 40, 20)], "opened", 0.05, 10)
    converted = compare_arms("p", "s", "p.s", exp, arms, "converted")
    assert converted.control == "none" and converted.declared
    assert [r["n"] for r in converted.rows()] == [40, 40, 40]


def test_one_sending_arm_and_a_holdout_compare_on_converted_only() -> None:
    exp = _experiment([{"id": "send"}, {"id": "hold", "holdout": True}])
    arms = [
        ArmMetrics("send", is_control=True, enrolled=50, sent=50, opened=20, converted=10),
        ArmMetrics("hold", holdout=True, enrolled=50, converted=4),
    ]
    opened = compare_arms("p", "s", "p.s", exp, arms, "opened")
    assert opened.report.status == NO_COMPARISON and opened.report.winner is None
    (row,) = opened.rows()
    assert (row["arm"], row["n"], row["conversions"], row["rate"], row["p_value"]) == ("send", 50, 20, 0.4, None)
    assert "the holdout (hold) counts for converted only" in opened.summary
    converted = compare_arms("p", "s", "p.s", exp, arms, "converted")
    assert converted.report == compare(
        [ArmCounts("send", 50, 10, True), ArmCounts("hold", 50, 4, False, True)], "converted", 0.05, 10
    )
    assert arms[1].rate("opened") is None and arms[1].rate("converted") == 0.08


def test_arms_the_playbook_no_longer_has_are_named() -> None:
    exp = _experiment([{"id": "a"}, {"id": "b"}])
    result = compare_arms(
        "p", "s", "p.s", exp, [ArmMetrics("a", is_control=True), ArmMetrics("b")], "opened", 0.05, ["old"]
    )
    assert result.unknown_arms == ("old",)
    assert "arms the playbook no longer has (old)" in result.summary
    with pytest.raises(ReportError):
        compare_arms("p", "s", "p.s", exp, [ArmMetrics("a"), ArmMetrics("b")], "revenue")


# --- promote -------------------------------------------------------------------------------------


@pytest.fixture
def promo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory with the experiment playbook (and a broken playbook beside it)."""
    root = tmp_path / "promo"
    (root / "playbooks").mkdir(parents=True)
    (root / "playbooks" / "exp.yaml").write_text(EXP, encoding="utf-8")
    (root / "playbooks" / "broken.yaml").write_text("id: [unclosed\n", encoding="utf-8")
    shutil.copytree(Path(__file__).resolve().parents[2] / "templates", root / "templates")
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.chdir(root)
    return root / "playbooks" / "exp.yaml"


def _promote(*args: str) -> Result:
    return CliRunner().invoke(app, ["experiments", "promote", *args])


def _weights(path: Path) -> list[float]:
    spec = load_playbook(path).spec.steps[0]
    assert isinstance(spec, EmailStep) and spec.email.experiment is not None
    return [a.weight for a in spec.email.experiment.arms]


def test_cli_promote_rewrites_the_weights(promo: Path) -> None:
    result = _promote("exp", "hello", "b")
    assert result.exit_code == 0, result.output
    assert "step 'hello', arm 'b' promoted" in result.stdout
    assert "a: 45 → 0" in result.stdout and "b: 45 → 100" in result.stdout
    assert "holdout (holdout): 10 → 0" in result.stdout
    assert "git diff playbooks/exp.yaml" in result.stdout and "commit" in result.stdout
    assert _weights(promo) == [0, 100, 0]
    changed = [
        (old, new) for old, new in zip(EXP.splitlines(), promo.read_text().splitlines(), strict=True) if old != new
    ]
    assert len(changed) == 3  # only the weights

    again = _promote("exp", "hello", "b")
    assert again.exit_code == 0 and "already had all the weight" in again.stdout
    assert "git diff" not in again.stdout


def test_cli_promote_refuses_what_does_not_exist(promo: Path) -> None:
    before = promo.read_bytes()
    arm = _promote("exp", "hello", "c")
    assert arm.exit_code == 2
    assert "has no arm 'c'" in arm.output and "its arms: a, b, holdout" in arm.output
    step = _promote("exp", "helo", "b")
    assert step.exit_code == 2 and "no step 'helo' (did you mean 'hello'?)" in step.output
    playbook = _promote("nope", "hello", "b")
    assert playbook.exit_code == 2 and "no playbook 'nope'" in playbook.output and "known: exp" in playbook.output
    usage = _promote("exp", "hello")
    assert usage.exit_code == 2 and "usage: touchflow experiments promote PLAYBOOK STEP ARM" in usage.output
    mixed = CliRunner().invoke(app, ["experiments", "promote", "exp", "hello", "b", "--format", "json"])
    assert mixed.exit_code == 2
    assert promo.read_bytes() == before
    assert "Traceback" not in arm.output + step.output + playbook.output
