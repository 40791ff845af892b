"""`touchflow status` (the store, the channel, each source's freshness, held playbooks, pending
and unknown messages) and `touchflow resume PLAYBOOK` (release a playbook held by its circuit)."""

from __future__ import annotations

import getpass
import json
import os
import sys
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.text import Text
from sqlalchemy import func, select, text

from engine.cli.common import Format, choice, err, open_store, out, project_or_exit, shown_url, unknown
from engine.cli.layout import print_rows, print_wrapped
from engine.cli.setup import prefect_checks
from engine.config import load_settings
from engine.guard.checks import HELD, last_data
from engine.guard.checks import resume as release_hold
from engine.guard.decide import age_text
from engine.guard.sources import TABLES, limits_for, shown, source_of_setting, sources_read
from engine.output import Layout
from engine.spec.base import format_duration
from engine.store.models import data_sources, ledger, playbook_holds

PENDING = ("planned", "claimed", "sending", "unknown")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def status(
    fmt: Annotated[
        Format, typer.Option("--format", help="table or json.", parser=choice(Format, "--format"))
    ] = Format.table,
) -> None:
    """Where the store is, how email leaves, how fresh each source is, what is held and pending."""
    settings = load_settings()
    project = project_or_exit(settings)
    store = open_store(settings.database_url)
    now = _now()
    configured = project.delivery.freshness
    sources: dict[str, Any] = {}
    for p in project.active():
        for source, limit in limits_for(p.spec, configured).items():
            entry = sources.setdefault(source, {"limit": limit, "playbooks": []})
            # A source another playbook only reads has no limit yet: the tightest one wins.
            entry["limit"] = limit if entry["limit"] is None else min(limit, entry["limit"])
        for source in sources_read(p.spec):
            sources.setdefault(source, {"limit": None, "playbooks": []})["playbooks"].append(p.id)
    for key, limit in configured.items():
        sources.setdefault(source_of_setting(key), {"limit": limit, "playbooks": []})
    with store.connect() as conn:
        revision = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()
        recorded = {r.source for r in conn.execute(select(data_sources.c.source))}
        for source in recorded:
            sources.setdefault(source, {"limit": None, "playbooks": []})
        newest = last_data(conn, sources, now)
        holds = list(conn.execute(select(playbook_holds).order_by(playbook_holds.c.playbook_id)))
        pending = select(ledger.c.status, func.count()).where(ledger.c.status.in_(PENDING)).group_by(ledger.c.status)
        counts: dict[str, int] = {row[0]: int(row[1]) for row in conn.execute(pending)}
    store.dispose()
    rows = []
    for source in sorted(sources, key=lambda s: (s not in TABLES, s)):
        info, last = sources[source], newest.get(source)
        limit = info["limit"]
        age = None if last is None else now - last
        rows.append(
            {
                "source": shown(source),
                "last_data_at": None if last is None else last.isoformat(sep=" ", timespec="minutes"),
                "age": None if age is None else age_text(age),
                "limit": None if limit is None else format_duration(limit),
                "stale": bool(age is not None and limit is not None and age > limit),
                "read_by": sorted(set(info["playbooks"])),
            }
        )
    report = {
        "store": shown_url(settings.database_url),
        "revision": revision,
        "channel": project.delivery.channel,
        "now": now.isoformat(sep=" "),
        "sources": rows,
        "held": [
            {
                "playbook": h.playbook_id,
                "status": h.status,
                "since": h.tripped_at.isoformat(sep=" ", timespec="minutes"),
                "why": (h.detail or {}).get("text", ""),
                "resumed_by": h.resumed_by,
            }
            for h in holds
        ],
        "messages": {s: int(counts.get(s, 0)) for s in PENDING},
        "prefect": [c.as_dict() for c in prefect_checks(project)],
    }
    if fmt is Format.json:
        sys.stdout.write(json.dumps(report) + "\n")
        return
    if fmt is Format.csv:
        err.print("error: --format must be table or json", markup=False)
        raise typer.Exit(2)
    _print(report)


SOURCES = Layout(
    columns=("source", "newest data", "age", "limit", "state", "read by"),
    heading=("source", "state"),
    detail="read by",
    labels={"newest data": "newest", "read by": "read by"},
)


def _print(report: dict[str, Any]) -> None:
    say = _line
    say(f"store:   {report['store']} (revision {report['revision']})")
    say(f"channel: {report['channel']}")
    rows = [
        {
            "source": r["source"],
            "newest data": r["last_data_at"] or "never",
            "age": r["age"] or "-",
            "limit": r["limit"] or "-",
            "state": "STALE" if r["stale"] else "",
            "read by": ", ".join(r["read_by"]),
        }
        for r in report["sources"]
    ]
    # A table when it fits, else a block per source: playbook ids wrap, never end in `…`.
    print_rows(out, SOURCES, rows, title=f"Sources at {report['now']} UTC")
    if report["held"]:
        for h in report["held"]:
            state = f"resumed by {h['resumed_by']}" if h["status"] != HELD else "held"
            say(f"{state}: {h['playbook']} since {h['since']} ({h['why']})")
    else:
        say("held playbooks: none")
    m = report["messages"]
    say(f"messages: {m['planned']} planned, {m['claimed']} claimed, {m['sending']} sending, {m['unknown']} unknown")
    for check in report["prefect"]:  # what `touchflow setup prefect` creates, and the Secret block
        say(f"prefect: {check['item']}: {'ok' if check['ok'] else 'MISSING'} ({check['detail']})")


def _line(text: str) -> None:
    """One line of the report, wrapped to the terminal between words (no trailing spaces)."""
    print_wrapped(out, Text(text))


def resume(
    playbook: Annotated[str, typer.Argument(help="The held playbook's id.")],
    who: Annotated[str | None, typer.Option("--as", help="Who resumes it (default: $USER).")] = None,
) -> None:
    """Let a playbook held by its circuit breaker run again: its next tick enrolls even above its
    limits, once (audited with who resumed it)."""
    settings = load_settings()
    project = project_or_exit(settings)
    by_id = project.by_id()
    if playbook not in by_id:
        unknown("playbook", playbook, by_id)
    person = who or os.environ.get("USER") or _login()
    store = open_store(settings.database_url)
    with store.begin() as conn:
        done = release_hold(conn, by_id[playbook], person, _now(), f"resume/{person}")
    store.dispose()
    if done:
        out.print(f"resumed {playbook} (by {person}): its next tick enrolls even above its limits, once", markup=False)
    else:
        out.print(f"{playbook} is not held: nothing to resume", markup=False)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
