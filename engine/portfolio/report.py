"""Per CSM: accounts and ARR, portfolio health against the team, the component that drags it
most, at-risk accounts renewing soon, tasks opened and closed by reason, and open task age.

Health is each active account's latest `health_history` row (the health model writes one a day);
portfolio health is the mean score of the CSM's accounts, the team's the mean over every
CSM-owned account. A component's points are read from `components` — `{name: {points: n, …}}` or
`{name: n}` — and the drag is the component whose mean points fall furthest below the team's.
`components` is data: a row whose JSON cannot be read costs its components, never the report.
At risk is any band but `healthy` (the health model's top band).
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Text, and_, case, cast, func, select

from engine.store.models import accounts, csms, health_history, tasks

HEALTHY = "healthy"
RENEWING_WITHIN = timedelta(days=90)


@dataclass(frozen=True)
class AtRisk:
    """An account at risk renewing within 90 days."""

    account_id: int
    name: str
    renewal_date: str
    arr: float
    score: float
    band: str


@dataclass(frozen=True)
class Holding:
    """One active account of a CSM's book, with what `--csm` shows of an at-risk one: renewal,
    ARR, and the latest score and band (None when the account was never scored)."""

    account_id: int
    name: str
    renewal_date: str | None
    arr: float
    score: float | None
    band: str | None


@dataclass(frozen=True)
class Reason:
    """Tasks of one reason (the playbook and step that opened them)."""

    reason: str
    opened: int
    closed: int


@dataclass(frozen=True)
class Portfolio:
    """One CSM's portfolio against the team."""

    email: str
    name: str
    accounts: int
    arr: float
    health: float | None
    vs_team: float | None
    drag: str | None
    drag_points: float | None
    summary: str
    at_risk_renewing: tuple[AtRisk, ...] = ()
    tasks_opened: int = 0
    tasks_closed: int = 0
    tasks_open: int = 0
    open_age_max_days: int | None = None
    open_age_median_days: float | None = None
    by_reason: tuple[Reason, ...] = field(default_factory=tuple)
    csm_id: int = 0
    book: tuple[Holding, ...] = ()
    """Every active account of the CSM, lowest score first (never scored last): the console's
    drill-down lists them."""

    def as_dict(self) -> dict[str, Any]:
        """One JSON object: the numbers, the sentence, the at-risk accounts and the reasons."""
        row = asdict(self)
        # The console's additions stay out of the command's output, which docs/health.md describes.
        del row["csm_id"], row["book"]
        row["csm"] = row.pop("email")
        return {"csm": row.pop("csm"), **row}

    def as_flat(self) -> dict[str, Any]:
        """One CSV row: the lists as counts."""
        row = self.as_dict()
        row["at_risk_renewing"] = len(self.at_risk_renewing)
        row.pop("by_reason")
        return row


FLAT_FIELDS = (
    "csm",
    "name",
    "accounts",
    "arr",
    "health",
    "vs_team",
    "drag",
    "drag_points",
    "summary",
    "at_risk_renewing",
    "tasks_opened",
    "tasks_closed",
    "tasks_open",
    "open_age_max_days",
    "open_age_median_days",
)


@dataclass
class _Scored:
    csm_id: int
    account_id: int
    name: str
    arr: float
    renewal_date: date | None
    score: float
    band: str
    points: dict[str, float]


def portfolios(conn: Connection, now: datetime, csm_id: int | None = None) -> list[Portfolio]:
    """Every CSM's portfolio (or only `csm_id`'s), by email; the team is always every CSM."""
    people = conn.execute(select(csms.c.id, csms.c.email, csms.c.name).order_by(csms.c.email, csms.c.id)).all()
    active = and_(accounts.c.status == "active", accounts.c.csm_id.is_not(None))
    books = {
        r.csm_id: (int(r.n), float(r.arr or 0))
        for r in conn.execute(
            select(accounts.c.csm_id, func.count().label("n"), func.sum(accounts.c.arr).label("arr"))
            .where(active)
            .group_by(accounts.c.csm_id)
        )
    }
    scored, holdings = _latest_health(conn)
    team = _means(scored)
    reasons, ages = _tasks(conn, now)
    out = []
    for person in people:
        if csm_id is not None and person.id != csm_id:
            continue
        mine = [s for s in scored if s.csm_id == person.id]
        count, arr = books.get(person.id, (0, 0.0))
        found = _portfolio(person, count, arr, mine, team, now, reasons.get(person.id, {}), ages.get(person.id, []))
        out.append(replace(found, csm_id=int(person.id), book=_book(holdings.get(person.id, []))))
    return out


def _book(rows: list[Holding]) -> tuple[Holding, ...]:
    """A CSM's accounts lowest score first, as the health page lists them; unscored ones last."""
    return tuple(sorted(rows, key=lambda h: (h.score is None, h.score or 0.0, h.account_id)))


def _latest_health(conn: Connection) -> tuple[list[_Scored], dict[int, list[Holding]]]:
    """The latest score of every active, CSM-owned account that has one; and every such account,
    scored or not, per CSM (one query: the health rows are outer-joined)."""
    h = health_history
    latest = select(h.c.account_id, func.max(h.c.computed_on).label("day")).group_by(h.c.account_id).subquery("latest")
    query = (
        select(
            accounts.c.csm_id,
            accounts.c.id,
            accounts.c.name,
            accounts.c.arr,
            accounts.c.renewal_date,
            h.c.score,
            h.c.band,
            # As text: parsed here, so a row that is not JSON costs its components, not the query.
            cast(h.c.components, Text).label("components"),
        )
        .select_from(
            accounts.outerjoin(latest, latest.c.account_id == accounts.c.id).outerjoin(
                h, and_(h.c.account_id == latest.c.account_id, h.c.computed_on == latest.c.day)
            )
        )
        .where(accounts.c.status == "active", accounts.c.csm_id.is_not(None))
        .order_by(accounts.c.id)
    )
    scored: list[_Scored] = []
    holdings: dict[int, list[Holding]] = defaultdict(list)
    for r in conn.execute(query):
        score = None if r.score is None else float(r.score)
        renews = r.renewal_date.isoformat() if r.renewal_date is not None else None
        band = None if r.band is None else str(r.band)
        holdings[int(r.csm_id)].append(Holding(int(r.id), str(r.name), renews, float(r.arr or 0), score, band))
        if score is not None:
            scored.append(
                _Scored(
                    int(r.csm_id),
                    int(r.id),
                    str(r.name),
                    float(r.arr or 0),
                    r.renewal_date,
                    score,
                    str(r.band),
                    _points(r.components),
                )
            )
    return scored, holdings


def _points(raw: str | None) -> dict[str, float]:
    """Each component's points from the stored JSON; {} when it is not a readable object."""
    try:
        parsed = json.loads(raw) if raw else {}
    except (ValueError, TypeError):
        return {}
    if not isinstance(parsed, dict):
        return {}
    out: dict[str, float] = {}
    for name, part in parsed.items():
        value = part.get("points") if isinstance(part, dict) else part
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[str(name)] = float(value)
    return out


def _means(rows: Iterable[_Scored]) -> tuple[float | None, dict[str, float]]:
    """Mean score and mean points per component of `rows`."""
    listed = list(rows)
    parts: dict[str, list[float]] = defaultdict(list)
    for row in listed:
        for name, points in row.points.items():
            parts[name].append(points)
    score = statistics.fmean(r.score for r in listed) if listed else None
    return score, {name: statistics.fmean(values) for name, values in parts.items()}


def _portfolio(
    person: Any,
    count: int,
    arr: float,
    mine: list[_Scored],
    team: tuple[float | None, dict[str, float]],
    now: datetime,
    reasons: Mapping[str, list[int]],
    ages: list[int],
) -> Portfolio:
    score, parts = _means(mine)
    vs_team = round(score - team[0], 1) if score is not None and team[0] is not None else None
    gaps = sorted((round(parts[n] - team[1][n], 1), n) for n in parts if n in team[1])
    drag, drag_points = (gaps[0][1], gaps[0][0]) if gaps and gaps[0][0] < 0 else (None, None)
    horizon = now.date() + RENEWING_WITHIN
    at_risk = tuple(
        AtRisk(s.account_id, s.name, s.renewal_date.isoformat(), s.arr, s.score, s.band)
        for s in sorted(mine, key=lambda s: (s.renewal_date or date.max, s.account_id))
        if s.band != HEALTHY and s.renewal_date is not None and now.date() <= s.renewal_date <= horizon
    )
    return Portfolio(
        email=str(person.email),
        name=str(person.name),
        accounts=count,
        arr=arr,
        health=None if score is None else round(score, 1),
        vs_team=vs_team,
        drag=drag,
        drag_points=drag_points,
        summary=_sentence(vs_team, drag, score is None),
        at_risk_renewing=at_risk,
        tasks_opened=sum(v[0] for v in reasons.values()),
        tasks_closed=sum(v[1] for v in reasons.values()),
        tasks_open=len(ages),
        open_age_max_days=max(ages) if ages else None,
        open_age_median_days=float(statistics.median(ages)) if ages else None,
        by_reason=tuple(Reason(r, v[0], v[1]) for r, v in sorted(reasons.items())),
    )


def _sentence(vs_team: float | None, drag: str | None, unscored: bool) -> str:
    """ "6 points below the team; the drag is relationships"."""
    if unscored or vs_team is None:
        return "no health scores"
    gap = abs(vs_team)
    points = f"{gap:g} point{'s' if gap != 1 else ''}"
    said = "level with the team" if gap == 0 else f"{points} {'below' if vs_team < 0 else 'above'} the team"
    return f"{said}; the drag is {drag}" if drag else said


def _tasks(conn: Connection, now: datetime) -> tuple[dict[int, dict[str, list[int]]], dict[int, list[int]]]:
    """Per CSM: [opened, closed] per reason, and the age in days of each open task."""
    done = case((tasks.c.status == "done", 1), else_=0)
    reasons: dict[int, dict[str, list[int]]] = defaultdict(dict)
    query = (
        select(tasks.c.csm_id, tasks.c.playbook_id, tasks.c.step_id, func.count().label("n"), func.sum(done).label("d"))
        .where(tasks.c.csm_id.is_not(None))
        .group_by(tasks.c.csm_id, tasks.c.playbook_id, tasks.c.step_id)
    )
    for r in conn.execute(query):
        reasons[int(r.csm_id)][f"{r.playbook_id}/{r.step_id}"] = [int(r.n), int(r.d or 0)]
    ages: dict[int, list[int]] = defaultdict(list)
    opened = select(tasks.c.csm_id, tasks.c.created_at).where(tasks.c.csm_id.is_not(None), tasks.c.status == "open")
    for r in conn.execute(opened):
        ages[int(r.csm_id)].append(max(0, (now - r.created_at).days))
    return reasons, ages
