"""`touchflow health`: every account's score explained, past days scored, and the backtest."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.cells import cell_len

from engine.cli.common import Format, NowOption, choice, err, open_store, out, parse_now, report_and_exit
from engine.config import load_settings
from engine.problems import ProblemsFound

if TYPE_CHECKING:
    from engine.health.spec import HealthSpec

health = typer.Typer(help="Health scores: explained per account, computed per day, backtested against churn.")

FormatOption = Annotated[
    Format,
    typer.Option("--format", help="How to print (json: one object per line).", parser=choice(Format, "--format")),
]


def _spec() -> HealthSpec | None:
    """The project's health model, or its problems and exit 1."""
    from engine.health.load import load_health

    try:
        return load_health(load_settings().project_dir)
    except ProblemsFound as exc:
        report_and_exit(exc)


@health.callback(invoke_without_command=True)
def show(
    ctx: typer.Context,
    account: Annotated[
        int | None, typer.Option(min=1, max=2**63 - 1, help="Explain this account's score, component by component.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many accounts, lowest scores first.")] = 50,
    offset: Annotated[int, typer.Option(min=0, help="Skip this many accounts first (the next page).")] = 0,
    fmt: FormatOption = Format.table,
    now: NowOption = None,
) -> None:
    """The latest scores at or before now: lowest first, or one account explained."""
    if ctx.invoked_subcommand is not None:
        return
    from engine.health.compute import explain, latest_day, scores_on
    from engine.output import as_csv, as_json_lines

    spec = _spec()
    engine = open_store(load_settings().database_url)
    with engine.connect() as conn:
        day = latest_day(conn, parse_now(now))
        scores = [] if day is None else scores_on(conn, day, account_id=account, limit=limit, offset=offset)
    if day is None:
        err.print("no health scores yet: a tick computes them once a day (`touchflow health compute`)")
        raise typer.Exit(1)
    if account is not None and not scores:
        err.print(f"error: account {account} has no score on {day.isoformat()}", markup=False)
        raise typer.Exit(1)
    rows: list[dict[str, Any]] = [
        {"account_id": s.account_id, "day": s.computed_on.isoformat(), "score": round(s.score, 1), "band": s.band,
         "components": s.points()}
        for s in scores
    ]  # fmt: skip
    if fmt is Format.json:
        sys.stdout.writelines(as_json_lines(rows))
    elif fmt is Format.csv:
        names = list(spec.components) if spec else sorted({n for r in rows for n in r["components"]})
        flat = [{**{k: v for k, v in r.items() if k != "components"}, **r["components"]} for r in rows]
        sys.stdout.writelines(as_csv(flat, ["account_id", "day", "score", "band", *names]))
    elif account is not None:
        sys.stdout.write(f"account {account}\n" + "".join(line + "\n" for line in explain(scores[0], spec)))
    else:
        sys.stdout.writelines(line + "\n" for line in score_lines(rows, out.width))


def score_lines(rows: list[dict[str, Any]], width: int) -> Iterator[str]:
    """The scores table for people: one line per account while it fits `width` (in terminal
    cells); the components that do not fit continue on lines of their own, under the first.
    Nothing is cut, and no line ends in spaces."""
    from engine.tasks_report import visible

    head = f"{'account':>8}  {'score':>5}  {'band':<12} "
    yield head + "components (points)"
    # Components continue under the first one, unless that leaves them too little room.
    indent = len(head) if width - len(head) >= 30 else 2
    for r in rows:
        lead = f"{r['account_id']:>8}  {r['score']:>5.1f}  {visible(r['band']):<12}"
        parts = [f"{k}={'-' if v is None else f'{v:g}'}" for k, v in r["components"].items()]
        yield from _wrapped(lead, parts, " " * indent, width)


def _wrapped(lead: str, parts: list[str], indent: str, width: int) -> Iterator[str]:
    """`lead` then `parts` separated by spaces, over lines of at most `width` cells (`indent`
    starting the later ones); a piece wider than a line by itself is folded."""
    lines = _fold(lead, width)
    current = lines.pop()
    yield from lines
    for part in parts:
        candidate = f"{current} {part}"
        if cell_len(candidate) <= width:
            current = candidate
            continue
        yield current.rstrip()
        *full, current = _fold(indent + part, width)
        yield from full
    yield current.rstrip()


def _fold(text: str, width: int) -> list[str]:
    """`text` cut into pieces of at most `width` cells (a wide character is never split)."""
    pieces, current = [], ""
    for char in text:
        if current and cell_len(current + char) > width:
            pieces.append(current.rstrip())
            current = ""
        current += char
    return [*pieces, current]


@health.command("compute")
def compute(
    now: NowOption = None,
    days: Annotated[int, typer.Option(min=0, help="Also score this many past days (history for the backtest).")] = 0,
    every: Annotated[int, typer.Option(min=1, help="Score one past day in this many.")] = 1,
) -> None:
    """Score every account today (again), and past days as they would have scored then."""
    from engine.health.compute import compute_day, past_days

    spec = _spec()
    if spec is None:
        err.print("error: no health model: write health.yaml beside touchflow.yaml (docs/health.md)", markup=False)
        raise typer.Exit(1)
    at = parse_now(now)
    engine = open_store(load_settings().database_url)
    moments = [*past_days(at.date() - timedelta(days=days), at.date() - timedelta(days=1), timedelta(days=every))]
    for moment in [*moments, at] if days else [at]:
        with engine.begin() as conn:
            written = compute_day(conn, spec, moment, replace=True)
        sys.stdout.write(f"{moment.date().isoformat()}: {written} accounts scored\n")


@health.command("backtest")
def backtest_command(
    horizon: Annotated[str, typer.Option(help="How long after a scored day a churn counts, e.g. 90d.")] = "90d",
    fmt: FormatOption = Format.table,
    now: NowOption = None,
) -> None:
    """How the scores of past days ranked the accounts that churned within the horizon."""
    from engine.health.backtest import backtest
    from engine.spec.base import parse_duration

    try:
        window = parse_duration(horizon, signed=False)
    except ValueError as exc:
        err.print(f"error: --horizon: {exc}", markup=False)
        raise typer.Exit(2) from None
    spec = _spec()
    engine = open_store(load_settings().database_url)
    with engine.connect() as conn:
        result = backtest(conn, parse_now(now), window, spec.band_names() if spec else None)
    out = result.as_dict()
    if fmt is Format.json:
        sys.stdout.write(json.dumps(out) + "\n")
        return
    if fmt is Format.csv:
        from engine.output import as_csv

        rows: list[dict[str, Any]] = [{"band": b, **v} for b, v in out["bands"].items()]
        sys.stdout.writelines(as_csv(rows, ["band", "n", "churned", "rate", "low", "high"]))
        return
    if result.n == 0:
        sys.stdout.write(f"no scored day is {result.horizon_days} days old yet: nothing to measure\n")
        return
    auc = (
        "n/a (no churn or no retention)"
        if result.auc is None
        else (f"{result.auc:.3f} (95 % {result.auc_low:.3f}–{result.auc_high:.3f}; 0.5 is a coin toss)")
    )
    sys.stdout.write(
        f"{result.days} scored days, {result.n} account-days, {result.churned} churned within "
        f"{result.horizon_days} days\nAUC {auc}\n"
    )
    for b in result.bands:
        rate = "-" if b.rate is None else f"{100 * b.rate:.1f} % ({100 * (b.low or 0):.1f}–{100 * (b.high or 0):.1f})"
        sys.stdout.write(f"  {b.band:<12} {b.n:>8} account-days  churned {b.churned:>6}  {rate}\n")
    sys.stdout.write(f"note: {result.as_dict()['note']}\n")
