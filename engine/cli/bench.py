"""`touchflow bench`: the engine against the floor (hand-written SQL, the bare HTTP client)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import Engine

from engine.cli.common import connect_or_exit, err, parse_now, report_and_exit, shown_url
from engine.config import MAX_DISPATCHERS, load_settings
from engine.problems import ProblemsFound

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
    from benchmarks.health import score_store
    from demo.data import generate

    settings = load_settings()
    if db is not None:  # an unreachable server is a clear error, not a traceback
        check_reachable(db)
    url = db or f"sqlite:///{settings.project_dir / 'bench' / f'store-{accounts}.db'}"
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    playbooks = load_examples(settings.playbooks_dir, settings.templates_dir)

    def build(engine: Engine, n: int, seed_: int, at: datetime) -> object:
        generate(engine, accounts=n, seed=seed_, now=at.replace(hour=0, minute=0))
        return score_store(engine, at, settings.project_dir)  # health conditions read the day's scores

    store = connect_or_exit(url, create=True)  # the benchmark builds its own store
    result = run_bench(store, accounts, seed, parse_now(now), playbooks, build, repeat=repeat)
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")


@bench.command("health")
def bench_health(
    accounts: Annotated[int, typer.Option(min=1, help="Accounts in the store (built by demo-data, reused).")] = 100_000,
    db: Annotated[str | None, typer.Option(help="Database URL (default: a SQLite file under bench/).")] = None,
    seed: Annotated[int, typer.Option(help="Demo-data seed.")] = 7,
    now: Annotated[str, typer.Option(help="The moment scored (the store is built around it).")] = "2026-11-23T09:00",
    repeat: Annotated[int, typer.Option(min=1, help="Runs of each side; the best counts.")] = 3,
) -> None:
    """Time the daily health scores of every account against hand-written SQL; print JSON."""
    from benchmarks.health import run as run_health
    from demo.data import generate
    from engine.health.load import load_health

    settings = load_settings()
    try:
        spec = load_health(settings.project_dir)
    except ProblemsFound as exc:
        report_and_exit(exc)
    if spec is None:
        err.print("error: no health model: the benchmark scores the project's health.yaml", markup=False)
        raise typer.Exit(1)
    if db is not None:  # an unreachable server is a clear error, not a traceback
        check_reachable(db)
    url = db or f"sqlite:///{settings.project_dir / 'bench' / f'store-{accounts}.db'}"
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)

    def build(engine: Engine, n: int, seed_: int, at: datetime) -> object:
        return generate(engine, accounts=n, seed=seed_, now=at.replace(hour=0, minute=0))

    store = connect_or_exit(url, create=True)  # the benchmark builds its own store
    result = run_health(store, accounts, seed, parse_now(now), spec, build, repeat=repeat)
    sys.stdout.write(json.dumps(result.as_dict(), default=str) + "\n")


@bench.command("dispatch")
def bench_dispatch(
    messages: Annotated[int, typer.Option(min=1, help="Emails to render and send.")] = 20_000,
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Requests in flight at once (both sides).")] = 8,
    dispatchers: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_DISPATCHERS,
            help="Dispatcher processes sharing the concurrency (as `run --dispatchers`; needs --db PostgreSQL).",
        ),
    ] = 1,
    db: Annotated[
        str | None, typer.Option(help="PostgreSQL URL (the store is a scratch schema); default: a SQLite file.")
    ] = None,
) -> None:
    """Send N messages through the SendGrid channel to a local server, against the bare client; print JSON."""
    from benchmarks.dispatch import run as run_dispatch

    if dispatchers > 1 and not (db or "").startswith("postgresql"):
        err.print(
            f"error: --dispatchers {dispatchers} needs --db with a PostgreSQL URL: dispatcher processes share"
            " the store by row locks, and SQLite has one writer",
            markup=False,
        )
        raise typer.Exit(2)
    if concurrency % dispatchers:
        err.print(
            f"error: --concurrency {concurrency} does not split evenly over --dispatchers {dispatchers}: use a"
            f" multiple of {dispatchers}, so that each process sends on as many threads",
            markup=False,
        )
        raise typer.Exit(2)
    if db is not None:  # an unreachable server is a clear error, not a traceback
        check_reachable(db)
    result = run_dispatch(
        messages, concurrency, load_settings().templates_dir, dispatchers=dispatchers, database_url=db
    )
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")


@bench.command("import")
def bench_import(
    events: Annotated[int, typer.Option(min=1, help="Events to generate, load bare and import.")] = 1_000_000,
    db: Annotated[
        str | None, typer.Option(help="PostgreSQL URL (each side gets a scratch schema); default: SQLite files.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the figures as one JSON object.")] = False,
) -> None:
    """Import N generated events with `touchflow import` against the bare bulk load of the same rows."""
    from benchmarks.import_events import run as run_import

    if db is not None:
        check_reachable(db)
    result = run_import(events, db)
    if as_json:
        sys.stdout.write(json.dumps(result.as_dict()) + "\n")
        return
    sys.stdout.write(
        f"{'side':<8} {'seconds':>9} {'rows/s':>10}\n"
        f"{'floor':<8} {result.floor_seconds:>9.2f} {result.floor_rows_per_s:>10,}\n"
        f"{'import':<8} {result.import_seconds:>9.2f} {result.import_rows_per_s:>10,}\n"
        f"{result.events:,} events on {result.database}: ratio {result.ratio:.2f} (import rate / floor rate)\n"
    )


@bench.command("ingest")
def bench_ingest(
    events: Annotated[int, typer.Option(min=1, help="Events to post (in batches of 100).")] = 100_000,
    db: Annotated[str | None, typer.Option(help="Database URL (default: a fresh SQLite file under bench/).")] = None,
    clients: Annotated[int, typer.Option(min=1, max=64, help="Client threads posting at once.")] = 4,
) -> None:
    """Post N events through the ingestion API (a real uvicorn server) against the same rows
    inserted directly (bulk_insert); print JSON."""
    from benchmarks.ingest import run as run_ingest

    if db is not None:
        check_reachable(db)
    url = db
    if url is None:
        path = load_settings().project_dir / "bench" / "ingest.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            stale.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
    connect_or_exit(url, create=True).dispose()
    result = run_ingest(url, events, clients)
    sys.stdout.write(json.dumps(result.as_dict()) + "\n")


def check_reachable(url: str) -> None:
    """Exit 1, saying why, unless the database at `url` answers (benchmarks build their own
    schema in it, so it need not hold a store)."""
    from sqlalchemy import text
    from sqlalchemy.exc import SQLAlchemyError

    engine = connect_or_exit(url, create=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except SQLAlchemyError as exc:
        err.print(f"cannot reach the database at {shown_url(url)}: {getattr(exc, 'orig', None) or exc}", markup=False)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
