"""The sending policy at dispatch (`engine/policy/gate.py`), end to end on SQLite and PostgreSQL.

Each test plans real one-email-step playbooks with the engine (`evaluate_and_advance`), then
dispatches with `tick.claim_batch` + `tick.deliver_batch` through a recording channel, and checks
what the gate wrote: which rows were sent, which went back to `planned` with which `not_before`,
which were `skipped`, and the audit row (decision, reason code, the numbers in `detail`) of each
message held back. Together they prove that

* frequency caps hold across playbooks and across dispatches, the higher `priority:` wins a
  contested cap (the loser is audited `lower_priority`), and a deferred message goes out exactly
  when the rolling window has room again;
* quiet hours, business days and holidays are judged in the recipient's own time zone (contact,
  else account) and defer to the next allowed moment, before anything is rendered or sent;
* a playbook's `policy:` overrides the project's calendar (`quiet_hours: false`), can opt out of
  the project's caps (`project_caps: false`), and its own caps count only its own emails;
* the suppression list and `do_not_contact` traits are re-checked at dispatch, after planning;
* a cap of 0 skips instead of deferring for ever;
* only cleared rows (`approved_at` set, status claimed / sending / sent / unknown) use up a cap.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from engine import tick
from engine.dispatch.channels import OutgoingEmail, SendError
from engine.dispatch.reconcile import reconcile
from engine.dispatch.settings import DispatchSettings
from engine.policy.gate import gate
from engine.project import Project, load_project
from engine.spec.policy import CapLimits, Caps, Policy, QuietHours
from engine.store.models import accounts, audit_log, contacts, ledger, suppressions
from tests.factories import Store, project

NOW = datetime(2026, 11, 24, 5, 0)  # a Tuesday; 05:00 in London, 14:00 in Seoul
DAY, HOUR = timedelta(days=1), timedelta(hours=1)
TEMPLATE = "welcome/hello"


# --- helpers --------------------------------------------------------------------------------------


def playbook(
    pid: str,
    *,
    priority: int = 50,
    policy: str | None = None,
    roles: Sequence[str] = ("admin",),
    steps: str | None = None,
) -> str:
    """A playbook sending one email to `roles` the day after the contract starts."""
    lines = [
        f"id: {pid}",
        f"name: {pid.title()}",
        f"priority: {priority}",
        "trigger: {date: contract_start, offset: 1d}",
    ]
    if policy is not None:
        lines.append(f"policy: {policy}")
    lines.append("steps:")
    lines.append(steps or f"  - email: {{to: {{role: [{', '.join(roles)}]}}, template: {TEMPLATE}}}")
    return "\n".join(lines) + "\n"


def make_project(tmp_path: Path, db_url: str, playbooks: dict[str, str], touchflow: str | None = None) -> Project:
    """A project with these playbooks (and the repo's templates); with `touchflow`, that
    `touchflow.yaml` (the factory writes none, so it is written here and the project reloaded)."""
    proj = project(tmp_path, db_url, playbooks=playbooks)
    if touchflow is None:
        return proj
    (proj.settings.project_dir / "touchflow.yaml").write_text(touchflow, encoding="utf-8")
    return load_project(proj.settings)


@dataclass
class Recorder:
    """An email channel that keeps (send key, recipient) of every message it is handed."""

    name: str = "recording"
    sent: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send(self, email: OutgoingEmail) -> str:
        with self.lock:
            self.sent.append((email.send_key, email.to_email))
        return f"rec:{email.send_key}"

    @property
    def keys(self) -> list[str]:
        return [key for key, _ in self.sent]


class Refusing(Recorder):
    """Answers every message with a SendError of `kind` (nothing is delivered)."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind

    def send(self, email: OutgoingEmail) -> str:
        raise SendError(self.kind, "HTTP 400: refused" if self.kind == "permanent" else "HTTP 429: busy", 0)


def plan(db: Engine, proj: Project, now: datetime, *pids: str) -> None:
    """Evaluate and advance these playbooks at `now` (plans their email rows)."""
    for pid in pids:
        tick.evaluate_and_advance(db, proj, pid, now, f"plan-{pid}", "recording")


def dispatch(
    db: Engine,
    proj: Project,
    now: datetime,
    channel: Recorder,
    rules: Policy | None = None,
    batch: int = 500,
    playbook_ids: list[str] | None = None,
) -> tick.DispatchResult:
    """Claim and deliver everything due at `now`, as the flow's dispatch does. `rules` None: the
    project's `touchflow.yaml` policy."""
    settings = DispatchSettings(policy=rules) if rules is not None else None
    total = tick.DispatchResult()
    while ids := tick.claim_batch(db, now, batch, playbook_ids):
        result = tick.deliver_batch(db, proj, ids, channel, now, f"dispatch-{now:%Y%m%dT%H%M}", settings=settings)
        for name in ("emails", "failed", "deferred", "skipped"):
            getattr(total, name).update(getattr(result, name))
    return total


def rows_of(db: Engine, playbook_id: str | None = None) -> list[Any]:
    stmt = select(ledger).order_by(ledger.c.id)
    if playbook_id is not None:
        stmt = stmt.where(ledger.c.playbook_id == playbook_id)
    with db.connect() as conn:
        return list(conn.execute(stmt).all())


def one_row(db: Engine, playbook_id: str, contact_id: int | None = None) -> Any:
    found = [r for r in rows_of(db, playbook_id) if contact_id is None or r.contact_id == contact_id]
    assert len(found) == 1, found
    return found[0]


def policy_audits(db: Engine, send_key: str | None = None) -> list[Any]:
    """Audit rows the gate wrote: deferrals and skips (not a provider's 429 or a reconciliation)."""
    stmt = select(audit_log).where(
        audit_log.c.decision.in_(["deferred", "skipped", "suppressed"]),
        audit_log.c.reason.not_in(["provider_busy", "claim_expired"]),
    )
    if send_key is not None:
        stmt = stmt.where(audit_log.c.send_key == send_key)
    with db.connect() as conn:
        return list(conn.execute(stmt.order_by(audit_log.c.id)).all())


def only_audit(db: Engine, send_key: str) -> Any:
    found = policy_audits(db, send_key)
    assert len(found) == 1, [(a.decision, a.reason, a.detail) for a in found]
    return found[0]


def contact_cap(day: int | None = None, week: int | None = None) -> Caps:
    return Caps(contact=CapLimits(day=day, week=week))


def new_account(store: Store, now: datetime, **kw: Any) -> int:
    """An account whose contract started the day before `now` (the test playbooks fire at `now`)."""
    return store.account(contract_start=(now - DAY).date(), **kw)


# --- caps and priority ----------------------------------------------------------------------------


def test_contact_daily_cap_from_touchflow_yaml_defers_the_lower_priority_playbook(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """Two playbooks email the same contact at the same `now` under `caps: {contact: {day: 1}}`
    read from touchflow.yaml: the higher `priority:` is sent even though it was planned second; the
    other goes back to `planned` with `not_before` = 24 h later, audited `deferred` /
    `lower_priority` with the numbers. Not a second earlier, but exactly at `now + 24h`, it goes."""
    store = Store(db, NOW)
    people = [store.contact(new_account(store, NOW), "admin") for _ in range(3)]
    proj = make_project(
        tmp_path,
        db_url,
        {"survey": playbook("survey", priority=20), "welcome": playbook("welcome", priority=80)},
        touchflow="policy: {caps: {contact: {day: 1}}}\n",
    )
    assert proj.delivery.policy.caps.contact.day == 1
    plan(db, proj, NOW, "survey", "welcome")  # the lower priority has the lower ledger ids
    assert [r.status for r in rows_of(db)] == ["planned"] * 6

    channel = Recorder()
    result = dispatch(db, proj, NOW, channel)  # no explicit rules: the project's touchflow.yaml

    assert (result.emails, result.deferred) == ({"welcome": 3}, {"survey": 3})
    assert sorted(channel.keys) == sorted(r.send_key for r in rows_of(db, "welcome"))
    for person in people:
        welcome, survey = one_row(db, "welcome", person), one_row(db, "survey", person)
        assert (welcome.status, welcome.approved_at) == ("sent", NOW)
        assert (survey.status, survey.approved_at, survey.not_before) == ("planned", None, NOW + DAY)
        deferred = only_audit(db, survey.send_key)
        assert (deferred.decision, deferred.reason, deferred.contact_id) == ("deferred", "lower_priority", person)
        assert "welcome" in deferred.detail
        assert f"1 email to contact {person} in the last 24 hours, cap 1" in deferred.detail

    assert dispatch(db, proj, NOW + DAY - timedelta(seconds=1), channel).emails == {}  # still waiting
    again = dispatch(db, proj, NOW + DAY, channel)
    assert again.emails == {"survey": 3}
    assert {(r.status, r.approved_at) for r in rows_of(db, "survey")} == {("sent", NOW + DAY)}
    assert len(channel.sent) == 6


@pytest.mark.parametrize(
    ("priorities", "winner", "reason"),
    [
        ((20, 80), "welcome", "lower_priority"),
        ((80, 20), "survey", "lower_priority"),
        ((50, 50), "survey", "capped_contact_daily"),
    ],
    ids=["welcome-higher", "survey-higher", "tie"],
)
def test_priority_decides_a_contested_cap(
    db: Engine, db_url: str, tmp_path: Path, priorities: tuple[int, int], winner: str, reason: str
) -> None:
    """Whichever playbook has the higher priority wins, whatever the ledger order; the loser is
    `lower_priority`. On a tie (same due time) the playbook id breaks it, and the loser is audited
    with the cap itself (`capped_contact_daily`): a tie-break is not a priority."""
    store = Store(db, NOW)
    admin = store.contact(new_account(store, NOW), "admin")
    survey_p, welcome_p = priorities
    proj = make_project(
        tmp_path,
        db_url,
        {"survey": playbook("survey", priority=survey_p), "welcome": playbook("welcome", priority=welcome_p)},
    )
    plan(db, proj, NOW, "survey", "welcome")
    channel = Recorder()
    dispatch(db, proj, NOW, channel, Policy(caps=contact_cap(day=1)))

    loser = "welcome" if winner == "survey" else "survey"
    assert channel.keys == [one_row(db, winner).send_key]
    held = one_row(db, loser, admin)
    assert (held.status, held.not_before) == ("planned", NOW + DAY)
    audit = only_audit(db, held.send_key)
    assert (audit.decision, audit.reason) == ("deferred", reason)
    assert f"1 email to contact {admin} in the last 24 hours, cap 1" in audit.detail


def test_a_cap_counts_what_earlier_dispatches_cleared(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Messages planned an hour after another went out to the same contact are deferred with the
    cap's own reason (no priority contest in this run) until 24 h after the earlier send: the
    rolling window counts from the send, not from the deferral. With a weekly cap of 2 as well,
    the last one waits for the later of the two caps' room (the week's), with both numbers."""
    store = Store(db, NOW)
    admin = store.contact(new_account(store, NOW), "admin")
    proj = make_project(tmp_path, db_url, {pid: playbook(pid) for pid in ("first", "second", "third")})
    rules = Policy(caps=contact_cap(day=1, week=2))
    channel = Recorder()
    plan(db, proj, NOW, "first")
    assert dispatch(db, proj, NOW, channel, rules).emails == {"first": 1}

    later = NOW + HOUR
    plan(db, proj, later, "second", "third")
    result = dispatch(db, proj, later, channel, rules)
    assert (result.emails, result.deferred) == ({}, {"second": 1, "third": 1})
    for pid in ("second", "third"):
        row = one_row(db, pid)
        assert (row.status, row.not_before) == ("planned", NOW + DAY)
        audit = only_audit(db, row.send_key)
        assert (audit.decision, audit.reason) == ("deferred", "capped_contact_daily")
        assert f"1 email to contact {admin} in the last 24 hours, cap 1" in audit.detail

    # At NOW + 24h one of the two goes; the other meets both caps full — the day cap (room at
    # NOW + 48h) and the week cap (2 in 7 days: room when the first send leaves the week, NOW + 7d)
    # — and waits for the later of the two.
    assert sum(dispatch(db, proj, NOW + DAY, channel, rules).emails.values()) == 1
    held = next(r for r in rows_of(db) if r.status == "planned")
    assert held.not_before == NOW + 7 * DAY
    last = policy_audits(db, held.send_key)[-1]
    assert last.reason == "capped_contact_daily"  # the first full cap in order: day, then week
    assert f"1 email to contact {admin} in the last 24 hours, cap 1" in last.detail
    assert f"2 emails to contact {admin} in the last 7 days, cap 2" in last.detail
    assert dispatch(db, proj, NOW + 7 * DAY - timedelta(seconds=1), channel, rules).emails == {}
    assert sum(dispatch(db, proj, NOW + 7 * DAY, channel, rules).emails.values()) == 1
    assert len(channel.sent) == 3


def test_an_account_cap_holds_across_its_contacts(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`caps: {account: {day: 2}}`: three contacts of one account, two are emailed and the third is
    deferred with `capped_account_daily`; another account is not affected."""
    store = Store(db, NOW)
    acc = new_account(store, NOW)
    people = [store.contact(acc, role) for role in ("admin", "champion", "billing")]
    elsewhere = store.contact(new_account(store, NOW), "admin")
    proj = make_project(tmp_path, db_url, {"hello": playbook("hello", roles=("admin", "champion", "billing"))})
    plan(db, proj, NOW, "hello")
    channel = Recorder()
    result = dispatch(db, proj, NOW, channel, Policy(caps=Caps(account=CapLimits(day=2))))
    assert (result.emails, result.deferred) == ({"hello": 3}, {"hello": 1})
    statuses = {r.contact_id: r.status for r in rows_of(db)}
    assert statuses[elsewhere] == "sent"
    assert sorted(statuses[p] for p in people) == ["planned", "sent", "sent"]
    held = next(r for r in rows_of(db) if r.status == "planned")
    assert held.not_before == NOW + DAY
    audit = only_audit(db, held.send_key)
    assert (audit.reason, audit.account_id) == ("capped_account_daily", acc)
    assert f"2 emails to account {acc} in the last 24 hours, cap 2" in audit.detail


# --- calendar -------------------------------------------------------------------------------------


def test_quiet_hours_are_the_recipients_local_hours(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Quiet hours 20:00–08:00 at 13:00 UTC: 22:00 in Seoul, 13:00 in London. A contact of a Seoul
    account (no zone of its own), and a Seoul contact of a London account, are deferred with
    `deferred_quiet_hours` until the next 08:00 in Seoul (23:00 UTC), nothing rendered or sent; a
    London contact of the Seoul account is sent. At 23:00 UTC the deferred ones go."""
    now = datetime(2026, 11, 24, 13, 0)
    store = Store(db, now)
    seoul = new_account(store, now, timezone="Asia/Seoul")
    seoul_admin = store.contact(seoul, "admin")
    london_champion = store.contact(seoul, "champion", timezone="Europe/London")
    london = new_account(store, now, timezone="Europe/London")
    seoul_person = store.contact(london, "admin", timezone="Asia/Seoul")
    proj = make_project(tmp_path, db_url, {"hello": playbook("hello", roles=("admin", "champion"))})
    plan(db, proj, now, "hello")
    assert len(rows_of(db)) == 3

    rules = Policy(quiet_hours=QuietHours(start="20:00", end="08:00"))
    channel = Recorder()
    result = dispatch(db, proj, now, channel, rules)
    assert (result.emails, result.deferred) == ({"hello": 1}, {"hello": 2})
    assert channel.keys == [one_row(db, "hello", london_champion).send_key]
    for contact_id in (seoul_admin, seoul_person):
        row = one_row(db, "hello", contact_id)
        assert (row.status, row.not_before, row.approved_at) == ("planned", datetime(2026, 11, 24, 23, 0), None)
        audit = only_audit(db, row.send_key)
        assert (audit.decision, audit.reason) == ("deferred", "deferred_quiet_hours")
        assert "22:00 Asia/Seoul" in audit.detail and "2026-11-25 08:00 Asia/Seoul" in audit.detail
    with db.connect() as conn:  # nothing was rendered for them: no `sent` audit row
        sent_keys = set(conn.execute(select(audit_log.c.send_key).where(audit_log.c.decision == "sent")).scalars())
    assert sent_keys == {one_row(db, "hello", london_champion).send_key}

    assert dispatch(db, proj, datetime(2026, 11, 24, 22, 59), channel, rules).emails == {}
    assert dispatch(db, proj, datetime(2026, 11, 24, 23, 0), channel, rules).emails == {"hello": 2}
    assert {r.status for r in rows_of(db)} == {"sent"}


@pytest.mark.parametrize(
    ("now", "reason", "until", "words"),
    [
        (datetime(2026, 11, 28, 10, 0), "deferred_business_day", datetime(2026, 11, 30), "Saturday 2026-11-28"),
        # A Friday holiday: deferred past the holiday *and* the weekend that follows it.
        (datetime(2026, 12, 25, 10, 0), "deferred_holiday", datetime(2026, 12, 28), "2026-12-25 is a holiday"),
    ],
    ids=["saturday", "holiday"],
)
def test_business_days_and_holidays(
    db: Engine, db_url: str, tmp_path: Path, now: datetime, reason: str, until: datetime, words: str
) -> None:
    """Business days Monday–Friday and a holiday on Friday 2026-12-25 (recipient in UTC): on a
    Saturday the message is deferred with `deferred_business_day` to Monday 00:00, on the holiday
    with `deferred_holiday` to the Monday after it."""
    store = Store(db, now)
    admin = store.contact(new_account(store, now, timezone="UTC"), "admin")
    proj = make_project(tmp_path, db_url, {"hello": playbook("hello")})
    plan(db, proj, now, "hello")
    rules = Policy(business_days=["mon", "tue", "wed", "thu", "fri"], holidays=[date(2026, 12, 25)])
    channel = Recorder()
    assert dispatch(db, proj, now, channel, rules).deferred == {"hello": 1}
    row = one_row(db, "hello", admin)
    assert (row.status, row.not_before) == ("planned", until)
    audit = only_audit(db, row.send_key)
    assert (audit.decision, audit.reason) == ("deferred", reason)
    assert words in audit.detail
    assert channel.sent == []
    assert dispatch(db, proj, until, channel, rules).emails == {"hello": 1}


def test_a_playbook_can_turn_off_the_projects_quiet_hours(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`policy: {quiet_hours: false}` on a playbook: its message goes at 22:00 in Seoul while the
    other playbook's is deferred by the project's quiet hours. A playbook's own `business_days`
    replace the project's: a Saturday-only playbook is deferred to Saturday on a Tuesday."""
    now = datetime(2026, 11, 24, 13, 0)  # Tuesday 22:00 in Seoul
    store = Store(db, now)
    admin = store.contact(new_account(store, now, timezone="Asia/Seoul"), "admin")
    proj = make_project(
        tmp_path,
        db_url,
        {
            "regular": playbook("regular"),
            "urgent": playbook("urgent", policy="{quiet_hours: false}"),
            "weekend": playbook("weekend", policy="{quiet_hours: false, business_days: [sat]}"),
        },
    )
    plan(db, proj, now, "regular", "urgent", "weekend")
    channel = Recorder()
    rules = Policy(quiet_hours=QuietHours(start="20:00", end="08:00"))
    result = dispatch(db, proj, now, channel, rules)
    assert (result.emails, result.deferred) == ({"urgent": 1}, {"regular": 1, "weekend": 1})
    assert channel.keys == [one_row(db, "urgent", admin).send_key]
    regular, weekend = one_row(db, "regular"), one_row(db, "weekend")
    assert only_audit(db, regular.send_key).reason == "deferred_quiet_hours"
    assert regular.not_before == datetime(2026, 11, 24, 23, 0)
    assert only_audit(db, weekend.send_key).reason == "deferred_business_day"
    assert weekend.not_before == datetime(2026, 11, 27, 15, 0)  # Saturday 00:00 in Seoul


def test_project_caps_false_ignores_the_projects_caps(db: Engine, db_url: str, tmp_path: Path) -> None:
    """A playbook with `policy: {project_caps: false}` (a receipt the customer asked for) is sent to
    a contact whose daily cap another playbook already used an hour earlier; an ordinary playbook
    planned at the same time is deferred `capped_contact_daily`."""
    store = Store(db, NOW)
    admin = store.contact(new_account(store, NOW), "admin")
    proj = make_project(
        tmp_path,
        db_url,
        {
            "welcome": playbook("welcome"),
            "receipt": playbook("receipt", policy="{project_caps: false}"),
            "survey": playbook("survey", priority=90),
        },
    )
    rules = Policy(caps=contact_cap(day=1))
    channel = Recorder()
    plan(db, proj, NOW, "welcome")
    assert dispatch(db, proj, NOW, channel, rules).emails == {"welcome": 1}
    plan(db, proj, NOW + HOUR, "receipt", "survey")
    result = dispatch(db, proj, NOW + HOUR, channel, rules)
    assert (result.emails, result.deferred) == ({"receipt": 1}, {"survey": 1})
    assert one_row(db, "receipt", admin).approved_at == NOW + HOUR
    survey = one_row(db, "survey", admin)
    assert (survey.status, survey.not_before) == ("planned", NOW + DAY)
    audit = only_audit(db, survey.send_key)
    assert audit.reason == "capped_contact_daily"
    assert f"1 email to contact {admin} in the last 24 hours, cap 1" in audit.detail


def test_a_playbooks_own_cap_counts_only_its_own_emails(db: Engine, db_url: str, tmp_path: Path) -> None:
    """`policy: {caps: {contact: {week: 1}}}` on `nps` (two emails a day apart): another playbook's
    emails to the same contact do not count against it, and its first email does not hold the
    other playbook back; its second email is deferred `capped_playbook_contact_weekly` until a
    week after its first."""
    nps_steps = "\n".join(
        [
            f"  - email: {{to: {{role: [admin]}}, template: {TEMPLATE}}}",
            "  - wait: 1d",
            f"  - email: {{to: {{role: [admin]}}, template: {TEMPLATE}}}",
        ]
    )
    store = Store(db, NOW)
    admin = store.contact(new_account(store, NOW), "admin")
    proj = make_project(
        tmp_path,
        db_url,
        {
            "nps": playbook("nps", policy="{caps: {contact: {week: 1}}}", steps=nps_steps),
            "welcome": playbook("welcome"),
            "tips": playbook("tips"),
        },
    )
    channel = Recorder()
    plan(db, proj, NOW, "welcome", "nps")
    assert dispatch(db, proj, NOW, channel, Policy()).emails == {"welcome": 1, "nps": 1}

    plan(db, proj, NOW + DAY, "nps", "tips")
    result = dispatch(db, proj, NOW + DAY, channel, Policy())
    assert (result.emails, result.deferred) == ({"tips": 1}, {"nps": 1})
    second = next(r for r in rows_of(db, "nps") if r.status == "planned")
    assert (second.contact_id, second.not_before) == (admin, NOW + 7 * DAY)
    audit = only_audit(db, second.send_key)
    assert (audit.decision, audit.reason) == ("deferred", "capped_playbook_contact_weekly")
    assert f"1 email from playbook nps to contact {admin} in the last 7 days, cap 1" in audit.detail
    assert dispatch(db, proj, NOW + 7 * DAY, channel, Policy()).emails == {"nps": 1}


def test_a_cap_deferral_lands_on_an_allowed_moment(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Quiet hours 20:00–08:00 and `caps: {contact: {day: 1}}` in London (UTC in November): an
    urgent playbook (no quiet hours) emails a contact on Tuesday at 22:00; a regular one planned on
    Wednesday at 09:00 has room again on Wednesday at 22:00, which is quiet, so it is deferred
    (`capped_contact_daily`) straight to Thursday 08:00, and goes then."""
    tuesday_night = datetime(2026, 11, 24, 22, 0)
    store = Store(db, tuesday_night)
    admin = store.contact(new_account(store, tuesday_night, timezone="Europe/London"), "admin")
    proj = make_project(
        tmp_path, db_url, {"urgent": playbook("urgent", policy="{quiet_hours: false}"), "regular": playbook("regular")}
    )
    rules = Policy(caps=contact_cap(day=1), quiet_hours=QuietHours(start="20:00", end="08:00"))
    channel = Recorder()
    plan(db, proj, tuesday_night, "urgent")
    assert dispatch(db, proj, tuesday_night, channel, rules).emails == {"urgent": 1}
    wednesday = datetime(2026, 11, 25, 9, 0)
    plan(db, proj, wednesday, "regular")
    assert dispatch(db, proj, wednesday, channel, rules).deferred == {"regular": 1}
    regular = one_row(db, "regular", admin)
    assert regular.not_before == datetime(2026, 11, 26, 8, 0)
    audit = only_audit(db, regular.send_key)
    assert audit.reason == "capped_contact_daily"
    assert "2026-11-26 08:00 Europe/London" in audit.detail
    assert dispatch(db, proj, datetime(2026, 11, 26, 8, 0), channel, rules).emails == {"regular": 1}


# --- suppression and never-allowed ----------------------------------------------------------------


def test_suppression_is_checked_again_at_dispatch(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Addresses unsubscribed or bounced, and contacts or accounts marked `do_not_contact`, after
    the messages were planned: their rows become `skipped`, audited `skipped` with the matching
    `suppressed_*` reason (the address compared case-insensitively); the others are sent. No policy
    is needed."""
    store = Store(db, NOW)
    acc = new_account(store, NOW)
    gone = store.contact(acc, "admin", email="Gone@Acme.example")
    bounced = store.contact(acc, "champion")
    private = store.contact(acc, "billing")
    kept = store.contact(acc, "user")
    closed = new_account(store, NOW)
    closed_admin = store.contact(closed, "admin")
    proj = make_project(tmp_path, db_url, {"hello": playbook("hello", roles=("admin", "champion", "billing", "user"))})
    plan(db, proj, NOW, "hello")
    assert {r.status for r in rows_of(db)} == {"planned"}

    with db.begin() as conn:
        listed = {"gone@acme.example": "unsubscribe", f"person{bounced}@acme.example": "bounce"}
        conn.execute(
            suppressions.insert(),
            [
                {"email": address, "reason": why, "source": "sendgrid_webhook", "created_at": NOW, "detail": ""}
                for address, why in listed.items()
            ],
        )
        conn.execute(update(contacts).where(contacts.c.id == private).values(traits={"do_not_contact": True}))
        conn.execute(update(accounts).where(accounts.c.id == closed).values(traits={"do_not_contact": True}))

    channel = Recorder()
    result = dispatch(db, proj, NOW, channel)
    assert (result.emails, result.skipped) == ({"hello": 1}, {"hello": 4})
    assert channel.keys == [one_row(db, "hello", kept).send_key]
    expected = {
        gone: "suppressed_unsubscribed",
        bounced: "suppressed_bounced",
        private: "suppressed_do_not_contact",
        closed_admin: "suppressed_do_not_contact",
    }
    for contact_id, reason in expected.items():
        row = one_row(db, "hello", contact_id)
        assert (row.status, row.approved_at) == ("skipped", None)
        audit = only_audit(db, row.send_key)
        assert (audit.decision, audit.reason, audit.contact_id) == ("skipped", reason, contact_id)
    assert "suppression list (unsubscribe)" in only_audit(db, one_row(db, "hello", gone).send_key).detail
    assert f"account {closed} is do-not-contact" in only_audit(db, one_row(db, "hello", closed_admin).send_key).detail


def test_a_cap_of_zero_skips(db: Engine, db_url: str, tmp_path: Path) -> None:
    """A cap with limit 0 means never: the message is `skipped` (not deferred for ever), audited
    `skipped` with the cap's reason — for the project's caps and for a playbook's own."""
    store = Store(db, NOW)
    admin = store.contact(new_account(store, NOW), "admin")
    proj = make_project(
        tmp_path,
        db_url,
        {
            "hello": playbook("hello"),
            "silent": playbook("silent", policy="{project_caps: false, caps: {account: {month: 0}}}"),
        },
    )
    plan(db, proj, NOW, "hello", "silent")
    channel = Recorder()
    result = dispatch(db, proj, NOW, channel, Policy(caps=contact_cap(day=0)))
    assert (result.emails, result.skipped, result.deferred) == ({}, {"hello": 1, "silent": 1}, {})
    assert channel.sent == []
    for pid, reason in (("hello", "capped_contact_daily"), ("silent", "capped_playbook_account_monthly")):
        row = one_row(db, pid, admin)
        assert (row.status, row.not_before, row.approved_at) == ("skipped", None, None)
        audit = only_audit(db, row.send_key)
        assert (audit.decision, audit.reason) == ("skipped", reason)
        assert "cap 0" in audit.detail


# --- what counts toward a cap ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "counted"),
    [("sent", True), ("unknown", True), ("sending", True), ("claimed", True), ("failed", False), ("skipped", False)],
)
def test_only_cleared_rows_count(db: Engine, db_url: str, tmp_path: Path, status: str, counted: bool) -> None:
    """A message cleared at NOW (`approved_at` set) whose row is then in `status`: an hour later a
    second message to the same contact is deferred by `caps: {contact: {day: 1}}` when the first
    row is claimed / sending / sent / unknown (it went, or may have gone), and sent when it is
    failed or skipped."""
    store = Store(db, NOW)
    admin = store.contact(new_account(store, NOW), "admin")
    proj = make_project(tmp_path, db_url, {"first": playbook("first"), "second": playbook("second")})
    rules = Policy(caps=contact_cap(day=1))
    channel = Recorder()
    plan(db, proj, NOW, "first")
    dispatch(db, proj, NOW, channel, rules)
    first = one_row(db, "first")
    assert (first.status, first.approved_at) == ("sent", NOW)
    with db.begin() as conn:
        conn.execute(update(ledger).where(ledger.c.id == first.id).values(status=status))

    plan(db, proj, NOW + HOUR, "second")
    result = dispatch(db, proj, NOW + HOUR, channel, rules)
    second = one_row(db, "second", admin)
    if counted:
        assert (result.emails, second.status, second.not_before) == ({}, "planned", NOW + DAY)
        assert only_audit(db, second.send_key).reason == "capped_contact_daily"
    else:
        assert (result.emails, second.status, second.approved_at) == ({"second": 1}, "sent", NOW + HOUR)


def test_failed_and_retried_sends_do_not_use_up_the_cap(db: Engine, db_url: str, tmp_path: Path) -> None:
    """For real: a message the provider refuses (`failed`, `approved_at` set) and one it answers 429
    (back to `planned` for a retry, `approved_at` set) do not count: the next message to each of
    the two contacts is sent under `caps: {contact: {day: 1}}`."""
    store = Store(db, NOW)
    refused_to = store.contact(new_account(store, NOW), "admin")
    busy_to = store.contact(new_account(store, NOW), "admin")
    proj = make_project(tmp_path, db_url, {"first": playbook("first"), "second": playbook("second")})
    rules = Policy(caps=contact_cap(day=1))
    plan(db, proj, NOW, "first")
    busy_id = one_row(db, "first", busy_to).id
    with db.begin() as conn:  # dispatch them one at a time, each through its own failing channel
        conn.execute(update(ledger).where(ledger.c.id == busy_id).values(not_before=NOW + timedelta(minutes=1)))
    assert dispatch(db, proj, NOW, Refusing("permanent"), rules).failed == {"first": 1}
    assert dispatch(db, proj, NOW + timedelta(minutes=1), Refusing("retry"), rules).emails == {}
    refused, busy = one_row(db, "first", refused_to), one_row(db, "first", busy_to)
    assert (refused.status, refused.approved_at) == ("failed", NOW)
    assert (busy.status, busy.approved_at) == ("planned", NOW + timedelta(minutes=1))
    assert busy.not_before is not None and busy.not_before > NOW + timedelta(minutes=1)

    channel = Recorder()
    plan(db, proj, NOW + 2 * timedelta(minutes=1), "second")
    result = dispatch(db, proj, NOW + 2 * timedelta(minutes=1), channel, rules, playbook_ids=["second"])
    assert (result.emails, result.deferred) == ({"second": 2}, {})
    assert {r.contact_id for r in rows_of(db, "second") if r.status == "sent"} == {refused_to, busy_to}


@pytest.mark.parametrize("how", ["retry_after_429", "requeued_by_reconcile"])
def test_a_message_back_in_the_queue_does_not_count_against_itself(
    db: Engine, db_url: str, tmp_path: Path, how: str
) -> None:
    """The only message to a contact is cleared under `caps: {contact: {day: 1}}` but not sent:
    the provider answered 429 (back to `planned` with a retry time), or the dispatcher died after
    the gate and reconciliation put the claimed row back in the queue. Nothing has reached the
    contact, so when it is dispatched again it must be sent, not deferred by its own clearance."""
    store = Store(db, NOW)
    admin = store.contact(new_account(store, NOW), "admin")
    proj = make_project(tmp_path, db_url, {"hello": playbook("hello")})
    rules = Policy(caps=contact_cap(day=1))
    plan(db, proj, NOW, "hello")
    if how == "retry_after_429":
        assert dispatch(db, proj, NOW, Refusing("retry"), rules).emails == {}
        retry_at = one_row(db, "hello").not_before
        assert retry_at is not None
    else:
        ids = tick.claim_batch(db, NOW)
        with db.connect() as conn:  # the gate only, as a dispatcher that dies right after it
            rows = conn.execute(select(ledger).where(ledger.c.id.in_(ids))).all()
            people = {r.id: dict(r._mapping) for r in conn.execute(select(contacts))}
            firms = {r.id: dict(r._mapping) for r in conn.execute(select(accounts))}
            cleared = gate(conn, rows, people, firms, proj.by_id(), rules, NOW, "died")
            conn.commit()
        assert len(cleared.cleared) == 1
        retry_at = NOW + timedelta(minutes=20)
        with db.begin() as conn:
            assert reconcile(conn, retry_at, timedelta(minutes=15), "reconcile").requeued == 1
    row = one_row(db, "hello")
    assert (row.status, row.approved_at) == ("planned", NOW)  # cleared at NOW, never sent

    channel = Recorder()
    result = dispatch(db, proj, retry_at, channel, rules)
    assert [(a.reason, a.detail) for a in policy_audits(db, row.send_key)] == []
    assert (result.emails, channel.keys) == ({"hello": 1}, [row.send_key])
    assert one_row(db, "hello", admin).status == "sent"


def test_the_policy_lock_row_is_recreated_when_missing(db: Engine) -> None:
    """A store whose `locks` row was deleted still serialises the gate: the row comes back."""
    from sqlalchemy import delete

    from engine.policy.gate import lock
    from engine.store.models import locks

    with db.begin() as conn:
        conn.execute(delete(locks))
    with db.begin() as conn:
        lock(conn, "policy", NOW)
    with db.connect() as conn:
        assert conn.execute(select(locks.c.name, locks.c.held_at)).all() == [("policy", NOW)]


def test_a_claim_that_expired_meanwhile_sends_nothing_and_writes_nothing(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A dispatcher whose claim outlived `reconcile_after` (reconciliation put its rows back and
    another dispatcher claimed them) must not send them too: its claim token no longer matches."""
    from engine.dispatch.reconcile import reconcile

    proj = make_project(tmp_path, db_url, {"one": playbook("one")})
    store = Store(db, NOW)
    for _ in range(3):
        store.contact(new_account(store, NOW))
    plan(db, proj, NOW, "one")
    slow = tick.claim_batch(db, NOW, token="slow")
    later = NOW + timedelta(hours=1)
    with db.begin() as conn:
        assert reconcile(conn, later, timedelta(minutes=15), "reconcile").requeued == len(slow)
    fast = tick.claim_batch(db, later, token="fast")
    assert sorted(fast) == sorted(slow)
    first, second = Recorder(), Recorder()
    tick.deliver_batch(db, proj, slow, first, NOW, "slow", token="slow")  # the expired claim wakes up
    tick.deliver_batch(db, proj, fast, second, later, "fast", token="fast")
    assert first.keys == [] and len(second.keys) == len(fast) == len(set(second.keys))
    assert {r.status for r in rows_of(db, "one")} == {"sent"}


def test_higher_priority_rows_are_claimed_first_across_batches(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Caps go to the higher-priority playbook even when its rows come in a later claim batch
    (they are claimed first): batches of one, the low-priority row planned first."""
    proj = make_project(
        tmp_path,
        db_url,
        {"low": playbook("low", priority=10), "high": playbook("high", priority=90)},
        "policy: {caps: {contact: {day: 1}}}\n",
    )
    store = Store(db, NOW)
    store.contact(new_account(store, NOW))
    plan(db, proj, NOW, "low", "high")
    channel = Recorder()
    ranks = tick.priorities(proj)
    while ids := tick.claim_batch(db, NOW, 1, token=(token := f"t{len(channel.sent)}"), priorities=ranks):
        tick.deliver_batch(db, proj, ids, channel, NOW, "run", token=token)
    assert [r.status for r in rows_of(db, "high")] == ["sent"]
    assert [r.status for r in rows_of(db, "low")] == ["planned"]


def test_a_time_zone_nobody_knows_falls_back_instead_of_stopping_dispatch(
    db: Engine, db_url: str, tmp_path: Path
) -> None:
    """A contact whose time zone is garbage is judged in the account's (then the project's, then
    UTC) — the batch goes on."""
    proj = make_project(
        tmp_path, db_url, {"one": playbook("one")}, 'policy: {quiet_hours: {start: "20:00", end: "08:00"}}\n'
    )
    store = Store(db, NOW)
    store.contact(new_account(store, NOW, timezone="Asia/Seoul"), timezone="Mars/Olympus")
    plan(db, proj, NOW, "one")
    result = dispatch(db, proj, NOW, Recorder())
    assert result.emails == {"one": 1}  # 14:00 in Seoul: allowed (14:00 is inside nobody's quiet hours)
