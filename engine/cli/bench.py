"""`touchflow bench`: the engine against the floor (hand-written SQL, the bare HTTP client)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from engine.cli.common import connect_or_exit, parse_now
from engine.config import load_settings

bench = typer.Typer(no_args_is_help=True, help="Benchmarks: the engine against the floor.")


@bench.command("evaluate")
def bench_evaluate(
    accounts: Annotated[
        int, typer.Option(help="Accounts in the store (about 3 contacts and 30 events each).")
    ] = 100_000,
    db: Annotated[str | None, typer.Option(help="Database URL (default: a SQLite file under bench/).")] = None,
    seed: Annotated[int, typer.Option(help="Demo-data seed.")] = 7,
    now: Annotated[
        str, typer.Option(help="The moment evaluated at (the store is generated around it).")
    ] = "2026-11-23T09:00",
    repeat: Annotated[int, typer.Option(help="Runs of each side; the best counts.")] = 3,
) -> None:
    """Time one full evaluation of the example playbooks against hand-written SQL; print JSON."""
    from benchmarks.evaluate import load_examples
    from benchmarks.evaluate import run as run_bench
    from demo.data import generate

    settings = load_settings()
    url = db or f"sqlite:///{settings.project_dir / 'bench' / f'store-{accounts}.db'}"
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    playbooks = load_examples(settings.playbooks_dir, settings.templates_dir)

    def build(engine: Engine, n: int, seed_: int, at: datetime) -> object:
        return generate(engine, accounts=n, seed=seed_, now=at.replace(hour=0, minute=0))

    result = run_bench(connect_or_exit(url), accounts, seed, parse_now(now), playbooks, build, repeat=repeat)
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")


@bench.command("dispatch")
def bench_dispatch(
    messages: Annotated[int, typer.Option(min=1, help="Emails to render and send.")] = 20_000,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once (both sides).")] = 8,
) -> None:
    """Send N messages through the SendGrid channel to a local server, against the bare client; print JSON."""
    from benchmarks.dispatch import run as run_dispatch

    result = run_dispatch(messages, concurrency, load_settings().templates_dir)
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")
