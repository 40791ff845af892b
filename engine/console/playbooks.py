"""The playbook pages: the list (status, owner, priority, enrollments and sends in the last 7
days, problems from `validate`) and one playbook (its journey as SVG, segment and trigger in
words, the YAML with its stored versions, and on demand what `simulate` says about the next 4 weeks)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from markupsafe import Markup
from sqlalchemy import func, select
from starlette.responses import Response

from engine.console.describe import describe_segment, describe_trigger
from engine.console.graph import journey_svg
from engine.console.pages import PageContext
from engine.console.permissions import Page
from engine.project import Project
from engine.store.models import enrollments, ledger, playbook_versions

WEEK = timedelta(days=7)
SIMULATED = timedelta(weeks=4)


def playbook_list(ctx: PageContext) -> Response:
    """Every playbook with its figures for the last 7 days and its problems."""
    view = ctx.console.project()
    since = ctx.console.clock() - WEEK
    with ctx.console.engine.connect() as conn:
        entered: dict[str, int] = dict(
            conn.execute(  # type: ignore[arg-type]
                select(enrollments.c.playbook_id, func.count())
                .where(enrollments.c.enrolled_at >= since)
                .group_by(enrollments.c.playbook_id)
            ).all()
        )
        sent: dict[str, int] = dict(
            conn.execute(  # type: ignore[arg-type]
                select(ledger.c.playbook_id, func.count())
                .where(ledger.c.kind == "email", ledger.c.status == "sent", ledger.c.updated_at >= since)
                .group_by(ledger.c.playbook_id)
            ).all()
        )
    problems = Counter(p.path for p in view.problems if p.severity == "error")
    rows = [
        {
            "id": pb.id,
            "name": pb.spec.name,
            "status": pb.spec.status,
            "owner": pb.spec.owner or "",
            "priority": pb.spec.priority,
            "enrolled": entered.get(pb.id, 0),
            "sent": sent.get(pb.id, 0),
            "problems": problems.get(pb.path, 0),
        }
        for pb in sorted(view.playbooks.values(), key=lambda p: (-p.spec.priority, p.id))
    ]
    return ctx.render(
        "playbooks.html",
        {"rows": rows, "problems": view.problems, "settings_error": view.settings_error, "title": "Playbooks"},
    )


def playbook_detail(ctx: PageContext, simulation: dict[str, object] | None = None) -> Response:
    """One playbook: journey, words, YAML and stored versions."""
    view = ctx.console.project()
    playbook_id = ctx.request.path_params["playbook_id"]
    pb = view.playbooks.get(playbook_id)
    if pb is None:
        return ctx.render("error.html", {"status": 404, "message": f"No playbook '{playbook_id}'."}, status=404)
    with ctx.console.engine.connect() as conn:
        versions = conn.execute(
            select(playbook_versions.c.version, playbook_versions.c.first_seen_at, playbook_versions.c.spec)
            .where(playbook_versions.c.playbook_id == pb.id)
            .order_by(playbook_versions.c.first_seen_at.desc())
        ).all()
    chosen = ctx.request.query_params.get("version")
    shown_text = pb.text
    stored = []
    for v in versions:
        source = v.spec.get("source", "") if isinstance(v.spec, dict) else ""
        stored.append({"version": v.version, "first_seen_at": v.first_seen_at, "current": v.version == pb.version})
        if chosen == v.version and isinstance(source, str):
            shown_text = source
    values = {
        "title": pb.spec.name,
        "pb": pb,
        "graph": Markup(journey_svg(pb.spec, [s.id for s in pb.steps])),  # built from escaped text only
        "segment": describe_segment(pb.spec.segment, pb.subject),
        "trigger": describe_trigger(pb.spec.trigger),
        "yaml": shown_text,
        "versions": stored,
        "chosen": chosen if any(v["version"] == chosen for v in stored) else pb.version,
        "problems": [p for p in view.problems if p.path == pb.path],
        "simulation": simulation,
        "has_email": any(s.kind == "email" for s in pb.steps),
    }
    return ctx.render("playbook.html", values)


def run_simulation(ctx: PageContext) -> Response:
    """Replay the next 4 weeks on a scratch copy of the store (takes seconds) and show the weeks."""
    from engine.simulate import SimulationError, simulate

    view = ctx.console.project()
    playbook_id = ctx.request.path_params["playbook_id"]
    pb = view.playbooks.get(playbook_id)
    if pb is None or view.delivery is None:
        return playbook_detail(ctx)
    project = Project(
        settings=ctx.console.settings,
        playbooks=tuple(view.playbooks.values()),
        renderer=view.renderer,
        delivery=view.delivery,
    )
    start = ctx.console.clock().replace(minute=0, second=0, microsecond=0)
    try:
        report = simulate(ctx.console.engine, project, start, start + SIMULATED, timedelta(days=1), playbook_id=pb.id)
    except SimulationError as exc:
        return playbook_detail(ctx, {"error": str(exc)})
    weeks = [w for w in report.weeks if w.playbook == pb.id]
    return playbook_detail(
        ctx, {"weeks": weeks, "summary": report.over_messaging(), "notes": list(report.notes), "error": None}
    )


PAGES = [
    Page("/playbooks", playbook_list, "read", name="playbooks"),
    Page("/playbooks/{playbook_id}", playbook_detail, "read", name="playbook"),
    Page("/playbooks/{playbook_id}/simulate", run_simulation, "read", methods=("POST",), name="simulate"),
]
