"""`touchflow funnel`: the weekly lifecycle funnel with its bottleneck, and the playbooks that act
on the bottleneck beside their goal conversion against their holdout."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli.common import Format, NowOption, choice, err, open_store, out, parse_now, report_and_exit
from engine.cli.layout import print_rows
from engine.output import Layout

if TYPE_CHECKING:
    from engine.funnel.report import StageCount


class By(StrEnum):
    """What each week is split by: the account's tier, or its `segment` trait."""

    tier = "tier"
    segment = "segment"


EFFECT_LAYOUT = Layout(
    columns=("playbook", "enrolled", "converted", "holdout", "held conv.", "lift"),
    heading=("playbook",),
    numeric=frozenset({"enrolled", "converted", "holdout", "held conv.", "lift"}),
)


def funnel(
    weeks: Annotated[int, typer.Option(min=1, max=520, help="Weekly cohorts to show, the current week first.")] = 12,
    by: Annotated[
        By | None,
        typer.Option(help="Split each week by tier or by the segment trait.", parser=choice(By, "--by")),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option("--format", help="How to print (json: one object per line).", parser=choice(Format, "--format")),
    ] = Format.table,
    effects: Annotated[
        bool,
        typer.Option("--effects", help="Print the bottleneck's playbooks and their effect instead of the funnel."),
    ] = False,
    now: NowOption = None,
) -> None:
    """Per weekly cohort (by contract start): accounts at each stage, conversion, the bottleneck."""
    from engine.config import load_settings
    from engine.delivery_config import SettingsError, load_delivery
    from engine.funnel.effect import EFFECT_FIELDS, playbook_effects
    from engine.funnel.load import HEALTH_FILE, load_funnel
    from engine.funnel.report import bottleneck_totals, funnel_report
    from engine.output import as_csv, as_json_lines
    from engine.problems import ProblemsFound

    moment = parse_now(now)
    settings = load_settings()
    path = settings.project_dir / HEALTH_FILE
    try:
        traits = load_delivery(settings.project_dir).traits
        declared = load_funnel(path, str(path), traits)
    except (ProblemsFound, SettingsError) as exc:
        report_and_exit(exc)
    if declared is None:
        err.print(
            f"error: {path} declares no funnel; add `funnel: {{stages: [{{id: signed, condition: …}}, …]}}` "
            "(docs/health.md, ## Funnel)",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(1)
    stages = [s.id for s in declared.stages]
    engine = open_store(settings.database_url)
    with engine.connect() as conn:
        rows = funnel_report(conn, declared, moment, weeks, by.value if by else None, traits)
        worst = bottleneck_totals(rows, stages)
        acting = next((s for s in declared.stages if worst and s.id == worst[0]), None)
        effect = playbook_effects(conn, acting.id, acting.playbooks) if acting else []
    engine.dispose()
    if fmt is not Format.table:
        fields = ["week", *([by.value] if by else []), "stage", "count", "conversion", "bottleneck"]
        chosen = [e.as_dict() for e in effect] if effects else [r.as_dict() for r in rows]
        columns = EFFECT_FIELDS if effects else fields
        sys.stdout.writelines(as_json_lines(chosen) if fmt is Format.json else as_csv(chosen, columns))
        return
    if not effects:
        _funnel_table(rows, stages, by.value if by else None, weeks)
    if worst is None:
        out.print("bottleneck: none (no account started a contract in these weeks)")
        return
    out.print(f"bottleneck: {worst[0]} ({worst[1]:.0%}) over the {weeks} weeks")
    if acting is None or not acting.playbooks:
        out.print(f"no playbook declares stage '{worst[0]}' (playbooks: in {HEALTH_FILE})", soft_wrap=True)
        return
    shown = [
        {
            "playbook": e.playbook,
            "enrolled": str(e.enrolled),
            "converted": _pct(e.rate),
            "holdout": str(e.holdout_enrolled),
            "held conv.": _pct(e.holdout_rate),
            "lift": "" if e.lift is None else f"{e.lift * 100:+.1f} pts",
        }
        for e in effect
    ]
    print_rows(out, EFFECT_LAYOUT, shown, f"playbooks acting on {worst[0]}: goal conversion vs holdout")


def _pct(rate: float | None) -> str:
    return "–" if rate is None else f"{rate:.0%}"


def _funnel_table(rows: Sequence[StageCount], stages: list[str], by: str | None, weeks: int) -> None:
    """One line per week (and group): each stage's count and conversion, the bottleneck marked *."""
    from engine.tasks_report import visible

    lines: dict[tuple[str, str], dict[str, str]] = {}
    for row in rows:
        # A segment is the customer's own text: control characters are shown as spaces, never run.
        key = (row.week.isoformat(), visible(row.group))
        line = lines.setdefault(key, {"week": key[0], **({by: key[1]} if by else {})})
        mark = "*" if row.bottleneck else ""
        line[row.stage] = f"{row.count} {_pct(row.conversion)}{mark}" if row.conversion is not None else str(row.count)
    layout = Layout(
        columns=("week", *([by] if by else []), *stages),
        heading=("week", *([by] if by else [])),
        numeric=frozenset(stages),
    )
    print_rows(out, layout, list(lines.values()), f"funnel: {weeks} weekly cohorts (* the week's bottleneck)")
