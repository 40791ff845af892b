"""`touchflow` commands. Each one parses options, calls the engine, and prints."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from engine.config import Settings, load_settings
from engine.problems import ProblemsFound
from engine.project import Project

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Touchflow: tech-touch customer-success playbooks.",
)
# Outside a terminal (CI logs, `make demo | tee`) rich would squeeze tables into 80 columns.
out = Console(highlight=False, width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, highlight=False)

NowOption = Annotated[
    str | None,
    typer.Option("--now", help="The moment to act as of, ISO 8601 (default: now, UTC)."),
]


def shown_url(url: str) -> str:
    """A database URL fit to print: the password hidden; never raises."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(malformed database URL)"


def connect_or_exit(url: str) -> Engine:
    """An Engine on the store (nothing is read yet), or exit 1 when the URL cannot be used."""
    from engine.store.db import DatabaseURLError, connect

    try:
        return connect(url)
    except DatabaseURLError as exc:
        err.print(f"cannot open the store at {shown_url(url)}: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


def open_store(url: str) -> Engine:
    """Connect and migrate, or exit with one line saying why the store cannot be opened."""
    from engine.store.db import migrate as upgrade

    engine = connect_or_exit(url)
    try:
        upgrade(engine)
    except (SQLAlchemyError, ValueError) as exc:
        reason = getattr(exc, "orig", None) or exc
        err.print(f"cannot open the store at {shown_url(url)}: {reason}", markup=False)
        raise typer.Exit(1) from None
    return engine


def project_or_exit(settings: Settings) -> Project:
    """The loaded project, or every problem as `file:line:col: error: …` and exit 1."""
    from engine.delivery_config import SettingsError
    from engine.project import load_project

    try:
        return load_project(settings)
    except (ProblemsFound, SettingsError) as exc:
        report_and_exit(exc)


def report_and_exit(exc: ProblemsFound | ValueError) -> NoReturn:
    """Print what is wrong with the project's files or settings, one line each, and exit 1."""
    for problem in exc.problems if isinstance(exc, ProblemsFound) else []:
        err.print(problem.format(), markup=False, soft_wrap=True)
    if not isinstance(exc, ProblemsFound):
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
    raise typer.Exit(1) from None


def parse_now(value: str | None) -> datetime:
    """ISO 8601 → naive UTC (the engine's convention); None → the current time."""
    if value is None:
        return datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"'{value}' is not an ISO 8601 date or time, e.g. 2026-11-23T09:00") from None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Playbook files or directories.")] = None,
) -> None:
    """Check playbooks and their templates; print `file:line:col: error: …` per problem."""
    from engine.validate import validate_paths

    settings = load_settings()
    report = validate_paths(paths or [settings.playbooks_dir], settings.templates_dir, Path.cwd())
    for problem in report.problems:
        out.print(problem.format(), markup=False, soft_wrap=True)
    if report.problems:
        n = len(report.problems)
        err.print(
            f"{n} problem{'s' * (n != 1)} in {report.files} file{'s' * (report.files != 1)}",
            markup=False,
        )
        raise typer.Exit(1)
    out.print(f"ok: {len(report.playbooks)} playbooks valid ({report.files} files)", markup=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a playbook file."""
    from engine.schema import playbook_schema_text

    sys.stdout.write(playbook_schema_text())


@app.command()
def migrate() -> None:
    """Create or upgrade the store's tables (Alembic)."""
    settings = load_settings()
    open_store(settings.database_url)
    out.print(f"store is at the latest revision: {shown_url(settings.database_url)}", markup=False)


@app.command("demo-data")
def demo_data(
    accounts: Annotated[int, typer.Option(help="How many accounts to generate.")] = 500,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and --now, same store.")] = 7,
    now: NowOption = None,
) -> None:
    """Replace the store's contents with a realistic synthetic B2B SaaS customer base."""
    from demo.data import generate

    settings = load_settings()
    at = parse_now(now).replace(hour=0, minute=0, second=0)
    engine = open_store(settings.database_url)
    started = time.perf_counter()
    summary = generate(engine, accounts=accounts, seed=seed, now=at)
    elapsed = time.perf_counter() - started
    out.print(
        f"demo data as of {at.date()}: {summary.accounts} accounts, {summary.contacts} contacts, "
        f"{summary.events} events, {summary.csms} CSMs in {elapsed:.1f} s → {shown_url(settings.database_url)}",
        markup=False,
    )


def _prefect_environment(project_dir: Path) -> None:
    # Ephemeral mode, offline, with start-up time a 2-core machine needs; set before prefect loads.
    os.environ.setdefault("PREFECT_HOME", str(project_dir / ".prefect"))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")


def _start_prefect_api() -> None:
    """Without a configured Prefect API, start one as a child that dies with this process
    (Prefect's own ephemeral server outlives a `kill -9`); exit 1 with a message if it cannot."""
    from flows.prefect_server import ServerStartError, prefect_api_configured, start_api_server

    if prefect_api_configured():
        return
    try:
        start_api_server()
    except (ServerStartError, OSError) as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command()
def run(
    now: NowOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what the tick would do; write nothing.")] = False,
    playbook: Annotated[str | None, typer.Option(help="Run only this playbook.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Run even when --now is before the store's last tick.")
    ] = False,
) -> None:
    """Run one tick through the Prefect flow (ephemeral mode: nothing to start by hand).

    Exits 1 when a playbook failed (the others still ran; stderr says which and why), and refuses
    a live tick earlier than the store's last one unless --force."""
    settings = load_settings()
    _prefect_environment(settings.project_dir)

    at = parse_now(now)
    project = project_or_exit(settings)  # fail fast, with file:line:col, before Prefect starts
    try:
        project.active(playbook)
    except KeyError as exc:
        err.print(f"error: {exc.args[0]}", markup=False)
        raise typer.Exit(2) from None
    store = open_store(settings.database_url)  # a new store gets its tables; an old one its upgrades
    if not (dry_run or force):
        _refuse_going_back(store, at)  # before Prefect starts; the flow checks again, atomically
    store.dispose()
    _start_prefect_api()
    from engine.tick import TimeWentBackwards
    from flows.tick import tick

    try:
        rows = tick(now=at, dry_run=dry_run, playbook=playbook, force=force)
    except TimeWentBackwards as exc:  # another tick moved the store's clock since the check above
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception as exc:
        if os.environ.get("TOUCHFLOW_DEBUG"):
            raise
        err.print(f"the tick failed: {type(exc).__name__}: {exc}", markup=False)
        err.print("(set TOUCHFLOW_DEBUG=1 to see the traceback)", markup=False)
        raise typer.Exit(1) from None
    if as_json:
        sys.stdout.write(json.dumps(rows) + "\n")
    else:
        _summary_table(rows, at, dry_run, settings.outbox_dir)
    failed = [row for row in rows if row.get("error")]
    for row in failed:
        err.print(f"error: playbook '{row['playbook']}' failed ({row['error']})", markup=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _refuse_going_back(store: Engine, at: datetime) -> None:
    """Exit 1, saying why, when `at` is before the store's last live tick."""
    from engine.tick import TimeWentBackwards, last_tick

    last = last_tick(store)
    if last is not None and at < last:
        err.print(f"error: {TimeWentBackwards(last, at)}", markup=False, soft_wrap=True)
        store.dispose()
        raise typer.Exit(1)


def _summary_table(rows: list[dict[str, object]], at: datetime, dry_run: bool, outbox: Path) -> None:
    title = f"{'Dry run' if dry_run else 'Tick'} at {at.isoformat(sep=' ')} UTC"
    table = Table(title=title)
    columns = (
        "playbook",
        "matched",
        "enrolled",
        "emails",
        "tasks",
        "deferred",
        "skipped",
        "failed",
        "converted",
        "exited",
    )
    for col in columns:
        table.add_column(col, justify="left" if col == "playbook" else "right")
    for row in rows:
        shown = {**row, "playbook": f"{row['playbook']} (failed)" if row.get("error") else row["playbook"]}
        table.add_row(*(str(shown[c]) for c in columns))
    out.print(table)
    if dry_run:
        out.print("dry run: nothing was written", markup=False)
    else:
        out.print(f"outbox: {outbox}", markup=False)


@app.command()
def simulate(
    start: Annotated[str, typer.Option("--from", help="First simulated tick, ISO 8601 (UTC).")],
    end: Annotated[str, typer.Option("--to", help="Last simulated moment, ISO 8601 (UTC).")],
    playbook: Annotated[str | None, typer.Option(help="Simulate only this playbook (whatever its status).")] = None,
    step: Annotated[str, typer.Option(help="Time between ticks: 1h, 12h, 1d, 1w (at least 1h).")] = "1d",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay ticks over the store's history on a scratch copy; report per playbook and week.

    The store is only read: enrollments, ledger, tasks, audit and condition state stay as they are.
    """
    from engine.simulate import SimulationError, parse_step
    from engine.simulate import simulate as run_simulation

    try:
        begin, finish, every = parse_now(start), parse_now(end), parse_step(step)
    except (typer.BadParameter, SimulationError) as exc:
        message = exc.message if isinstance(exc, typer.BadParameter) else str(exc)
        err.print(f"error: {message}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    settings = load_settings()
    project = project_or_exit(settings)
    source = connect_or_exit(settings.database_url)
    try:
        report = run_simulation(source, project, begin, finish, every, playbook)
    except SimulationError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        err.print(
            f"cannot read the store at {shown_url(settings.database_url)}: {reason}", markup=False, soft_wrap=True
        )
        raise typer.Exit(1) from None
    finally:
        source.dispose()
    if as_json:
        sys.stdout.write(json.dumps(report.as_dict()) + "\n")
        return
    columns = ("week", "enrolled", "emails", "tasks", "exits", "goals", "failed")
    for pid, weeks in report.by_playbook().items():
        table = Table(title=pid)
        for col in columns:
            table.add_column(col, justify="left" if col == "week" else "right")
        for row in weeks:
            table.add_row(*(str(getattr(row, c)) for c in columns))
        out.print(table)
    out.print(report.over_messaging(), markup=False, soft_wrap=True)
    out.print(
        f"simulated {begin.isoformat(sep=' ')} → {finish.isoformat(sep=' ')} UTC on a scratch copy: "
        "nothing was written to the store",
        markup=False,
        soft_wrap=True,
    )


@app.command()
def preview(
    playbook: Annotated[str, typer.Argument(help="The playbook id.")],
    step: Annotated[str | None, typer.Option(help="Only this email step.")] = None,
    contact: Annotated[int | None, typer.Option(help="Render for this contact id.")] = None,
    folder: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path("preview"),
    samples: Annotated[int, typer.Option(help="Sample contacts per locale.")] = 2,
) -> None:
    """Render every email step × locale of a playbook for sample contacts; nothing is sent."""
    from engine.preview import preview as render_previews

    settings = load_settings()
    project = project_or_exit(settings)
    compiled = project.by_id().get(playbook)
    if compiled is None:
        err.print(f"error: no playbook '{playbook}'", markup=False)
        raise typer.Exit(2)
    engine = open_store(settings.database_url)
    with engine.connect() as conn:
        results = render_previews(conn, compiled, project.renderer, folder, step, contact, samples)
    table = Table(title=f"Preview of {playbook}")
    for col in ("step", "locale", "contact", "subject"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r.step, r.locale or "default", str(r.contact_id), r.subject if not r.error else f"error: {r.error}"
        )
    out.print(table)
    out.print(f"open {(folder / playbook / 'index.html').resolve()}", markup=False)
    if any(r.error for r in results):
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
) -> None:
    """Serve the SendGrid Event Webhook (`POST /webhooks/sendgrid`) and the signed unsubscribe
    pages (`/unsubscribe`). The webhook's verification key comes from TOUCHFLOW_SENDGRID_WEBHOOK_KEY
    (the public key SendGrid shows for the signed webhook); without it only the pages are served."""
    import uvicorn

    from engine.unsubscribe import load_links
    from engine.webhooks.app import create_app

    key = os.environ.get("TOUCHFLOW_SENDGRID_WEBHOOK_KEY") or None
    if key is None:
        err.print(
            "warning: TOUCHFLOW_SENDGRID_WEBHOOK_KEY is not set: the event webhook is off, "
            "only /unsubscribe and /healthz are served",
            markup=False,
        )
    settings = load_settings()
    engine = open_store(settings.database_url)
    try:
        application = create_app(engine, key, links=load_links(settings.project_dir))
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    uvicorn.run(application, host=host, port=port, log_level="info")


@app.command("demo-engagement")
def demo_engagement(
    now: NowOption = None,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same events.")] = 7,
    force: Annotated[
        bool, typer.Option("--force", help="Post even when the channel is not the outbox (never on a real store).")
    ] = False,
) -> None:
    """Post what recipients did with the sent emails (delivered, opens, clicks, bounces,
    unsubscribes) as signed SendGrid events through the real webhook app: demo data for
    `touchflow experiments` and `touchflow audit`."""
    from demo.engagement import post_engagement
    from engine.delivery_config import SettingsError, load_delivery

    settings = load_settings()
    try:
        channel = load_delivery(settings.project_dir).channel
    except (ProblemsFound, SettingsError) as exc:
        report_and_exit(exc)
    if channel != "outbox" and not force:
        # Invented bounces and unsubscribes would suppress real addresses and settle real rows.
        err.print(
            f"error: the channel is {channel}: demo-engagement invents events, so it only runs on a demo store "
            "that sends to the outbox (--force to insist)",
            markup=False,
        )
        raise typer.Exit(2)
    engine = open_store(settings.database_url)
    done = post_engagement(engine, parse_now(now), seed)
    out.print(
        f"posted {done.events} signed events for {done.messages} sent emails: "
        f"{done.stored} stored, {done.suppressed} addresses suppressed",
        markup=False,
    )


@app.command()
def audit(
    playbook: Annotated[str | None, typer.Option(help="Only this playbook.")] = None,
    contact: Annotated[int | None, typer.Option(help="Only this contact id.")] = None,
    account: Annotated[int | None, typer.Option(help="Only this account id.")] = None,
    reason: Annotated[str | None, typer.Option(help="Only this reason code, e.g. capped_contact_daily.")] = None,
    decision: Annotated[str | None, typer.Option(help="Only this decision, e.g. deferred.")] = None,
    since: Annotated[str | None, typer.Option(help="From this date/time (ISO 8601) or this long ago (7d).")] = None,
    until: Annotated[str | None, typer.Option(help="Before this date/time, or this long ago.")] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many rows.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json (one object per line).")] = "table",
    summary: Annotated[bool, typer.Option("--summary", help="Only the count of each decision and reason.")] = False,
) -> None:
    """What the engine decided and why: sends, deferrals, caps, suppressions, tasks, failures."""
    from engine.audit_report import FIELDS, AuditFilter, parse_moment, query_audit, reason_counts
    from engine.output import as_csv, as_json_lines

    if fmt not in ("table", "csv", "json"):
        err.print(f"error: --format must be table, csv or json, not '{fmt}'", markup=False)
        raise typer.Exit(2)
    now = datetime.now(UTC).replace(tzinfo=None)
    try:
        window = [parse_moment(v, now) if v else None for v in (since, until)]
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    where = AuditFilter(playbook, contact, account, reason, decision, window[0], window[1], limit)
    engine = open_store(load_settings().database_url)
    with engine.connect() as conn:
        rows = query_audit(conn, where)
        if fmt != "table":
            fields: tuple[str, ...] = FIELDS
            if summary:  # the counts, in the asked format
                rows = iter([{"decision": d, "reason": r, "count": n} for d, r, n in reason_counts(list(rows))])
                fields = ("decision", "reason", "count")
            sys.stdout.writelines(as_json_lines(rows) if fmt == "json" else as_csv(rows, fields))
            return
        shown = list(rows)
    if summary:
        for dec, why, n in reason_counts(shown):
            out.print(f"{n:>7}  {dec:<14} {why}", markup=False)
        return
    table = Table(title=f"audit: {len(shown)} decisions")
    columns = ("at", "playbook", "step", "account_id", "contact_id", "decision", "reason", "detail")
    for col in columns:
        table.add_column(col.removesuffix("_id"), overflow="fold")
    for row in shown:
        table.add_row(*(str(row[c]) if row[c] is not None else "" for c in columns))
    out.print(table)


@app.command()
def experiments(
    args: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[PLAYBOOK | promote PLAYBOOK STEP ARM]",
            help="A playbook id to report on (default: every playbook); or `promote PLAYBOOK STEP ARM`.",
            show_default=False,
        ),
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option(
            help="Compare on this metric: delivered, opened, clicked, converted, unsubscribed, bounced, "
            "or all (default: each experiment's own)."
        ),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json (one object per line per arm).")] = "table",
) -> None:
    """Compare the arms of every email experiment with the control, or promote a winning arm.

    experiments [PLAYBOOK]: each arm's rate, 95% interval, lift, Holm-corrected p-value and verdict.

    experiments promote PLAYBOOK STEP ARM: ARM gets all the weight in the file; review with git diff, commit.
    """
    from engine.experiments.report import METRICS, ReportError

    words = list(args or [])
    if words[:1] == ["promote"]:
        if metric is not None or fmt != "table":
            err.print("error: --metric and --format are for the report, not for promote", markup=False)
            raise typer.Exit(2)
        _promote_arm(words[1:])
        return
    if len(words) > 1:
        err.print(
            f"error: give at most one playbook id, not {len(words)} ({' '.join(words)}); "
            "to promote an arm: touchflow experiments promote PLAYBOOK STEP ARM",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    if fmt not in ("table", "csv", "json"):
        err.print(f"error: --format must be table, csv or json, not '{fmt}'", markup=False)
        raise typer.Exit(2)
    if metric is not None and metric != "all" and metric not in METRICS:
        err.print(f"error: --metric must be one of {', '.join(METRICS)} or all, not '{metric}'", markup=False)
        raise typer.Exit(2)
    playbook = words[0] if words else None
    settings = load_settings()
    project = project_or_exit(settings)
    from engine.experiments.present import all_rows
    from engine.experiments.report import FIELDS, experiment_report
    from engine.output import as_csv, as_json_lines

    engine = open_store(settings.database_url)
    try:
        with engine.connect() as conn:
            results = experiment_report(conn, project, playbook, metric)
    except ReportError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not results:
        found = f"playbook '{playbook}' has no" if playbook else "no playbook has an"
        message = f"{found} email step with an experiment (add `experiment:` with arms to an email step)"
        (out if fmt == "table" else err).print(message, markup=False, soft_wrap=True)
    if fmt != "table":
        rows = all_rows(results)
        sys.stdout.writelines(as_json_lines(rows) if fmt == "json" else as_csv(rows, FIELDS))
        return
    from engine.experiments.present import (
        OVERVIEW_COLUMNS,
        arm_label,
        ci_text,
        heading,
        lift_text,
        overview,
        p_text,
        rate_text,
    )

    for result in results:
        out.print(heading(result), markup=False, style="bold", soft_wrap=True)
        out.print(result.summary, markup=False, soft_wrap=True)
        table = Table()
        for col in ("arm", "n", "conversions", "rate", "95% CI", "lift vs control", "p (Holm)", "verdict"):
            right = col in ("n", "conversions", "rate", "p (Holm)")
            table.add_column(col, justify="right" if right else "left", overflow="fold")
        for a in result.report.arms:
            table.add_row(
                arm_label(a.arm, a.is_control, a.holdout),
                str(a.n),
                str(a.conversions),
                rate_text(a.conversions, a.n),
                ci_text(a.ci_low, a.ci_high),
                lift_text(a.lift_abs, a.lift_rel),
                p_text(a.p_value_holm),
                a.verdict,
            )
        out.print(table)
        if result.declared:  # every metric at a glance, under the experiment's own
            rates = Table(title="every metric per arm (enrolled, sent: counts; the others: rates)")
            for col in OVERVIEW_COLUMNS:
                rates.add_column(col, justify="left" if col == "arm" else "right")
            for row in overview(result):
                rates.add_row(*(row[c] for c in OVERVIEW_COLUMNS))
            out.print(rates)
        out.print("")


def _promote_arm(words: list[str]) -> None:
    from engine.experiments.promote import PromoteError, promote
    from engine.experiments.report import ReportError, find_playbook_file

    if len(words) != 3:
        err.print("error: usage: touchflow experiments promote PLAYBOOK STEP ARM", markup=False)
        raise typer.Exit(2)
    playbook, step, arm = words
    settings = load_settings()
    try:
        path = find_playbook_file(settings.playbooks_dir, playbook)
        result = promote(path, step, arm)
    except (ReportError, PromoteError) as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    out.print(result.describe(), markup=False, soft_wrap=True)
    if result.changed:
        try:
            shown = path.resolve().relative_to(Path.cwd().resolve())
        except ValueError:
            shown = path
        out.print(
            f"review the change with `git diff {shown}` and commit it; from the next tick, subjects reaching "
            "the step on this version get these weights (rows already planned keep their arm)",
            markup=False,
            soft_wrap=True,
        )


bench = typer.Typer(no_args_is_help=True, help="Benchmarks: the engine against the floor.")
app.add_typer(bench, name="bench")


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


def main() -> None:  # pragma: no cover - console entry point
    app()
