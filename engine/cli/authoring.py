"""Commands for writing playbooks: validate, schema, preview, simulate. None of them sends."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError

from engine.cli.common import (
    connect_or_exit,
    err,
    open_store,
    out,
    parse_now,
    project_or_exit,
    report_and_exit,
    shown_url,
    unknown,
)
from engine.config import load_settings
from engine.problems import ProblemsFound


def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Playbook files or directories.")] = None,
) -> None:
    """Check playbooks and their templates; print `file:line:col: error: …` per problem."""
    from engine.delivery_config import SettingsError, load_delivery
    from engine.validate import validate_paths

    settings = load_settings()
    try:  # the playbooks are checked against the trait types touchflow.yaml declares
        traits = load_delivery(settings.project_dir).traits
    except (ProblemsFound, SettingsError) as exc:
        report_and_exit(exc)
    from engine.cli.catalog import project_catalog

    data, said, bad_snapshot = project_catalog(settings)  # event names and values seen in the store
    err.print(said, markup=False, soft_wrap=True)
    report = validate_paths(
        paths or [settings.playbooks_dir], settings.templates_dir, Path.cwd(), traits, data,
        health_file=settings.project_dir / "health.yaml",
    )  # fmt: skip
    report.problems[:0] = bad_snapshot
    for problem in report.problems:
        out.print(problem.format(), markup=False, soft_wrap=True)
    if report.errors:  # warnings are printed, never a failure
        n = len(report.errors)
        err.print(
            f"{n} problem{'s' * (n != 1)} in {report.files} file{'s' * (report.files != 1)}",
            markup=False,
        )
        raise typer.Exit(1)
    out.print(f"ok: {len(report.playbooks)} playbooks valid ({report.files} files)", markup=False)


def schema() -> None:
    """Print the JSON Schema of a playbook file (with the event names and fields of the project's
    catalog.json for completion, when there is one)."""
    from engine.catalog.snapshot import SNAPSHOT_NAME, CatalogError, read_snapshot
    from engine.schema import playbook_schema_text
    from engine.store.catalogue import known_field_names

    events: list[str] = []
    fields: list[str] = []
    snapshot = load_settings().project_dir / SNAPSHOT_NAME
    if snapshot.exists():
        fields = sorted(set(known_field_names("contact")))
        try:
            found = read_snapshot(snapshot)
        except CatalogError as exc:
            err.print(f"{snapshot}: {exc}; the schema offers no event names", markup=False, soft_wrap=True)
        else:
            events = found.event_names()
            fields += sorted(f"{'contact.' if t.table == 'contact' else ''}traits.{t.key}" for t in found.traits)
    sys.stdout.write(playbook_schema_text(events, fields))


def simulate(
    start: Annotated[str, typer.Option("--from", help="First simulated tick, ISO 8601 (UTC).")],
    end: Annotated[str, typer.Option("--to", help="Last simulated moment, ISO 8601 (UTC).")],
    playbook: Annotated[str | None, typer.Option(help="Simulate only this playbook (whatever its status).")] = None,
    step: Annotated[str, typer.Option(help="Time between ticks: 1h, 12h, 1d, 1w (at least 1h).")] = "1d",
    who: Annotated[
        str | None, typer.Option("--who", help="List who this playbook would reach, with what and when.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Replay ticks over the store's history on a scratch copy; say what would happen and why.

    Per playbook and week: entries, emails sent / deferred / skipped by reason, tasks, branch
    splits, goals; totals; the busiest contacts; why a playbook matched nobody; what it cannot know.
    The store is only read: enrollments, ledger, tasks, audit and condition state stay as they are.
    """
    from engine.simulate import SimulationError, parse_step
    from engine.simulate import simulate as run_simulation
    from engine.simulate.present import WIDTH, render

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
        with _ticks_progress() as progress:
            report = run_simulation(source, project, begin, finish, every, playbook, who=who, progress=progress)
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
    for part in render(report):
        out.print(part, markup=False, width=WIDTH)
    out.print(
        f"simulated {begin.isoformat(sep=' ')} → {finish.isoformat(sep=' ')} UTC on a scratch copy: "
        "nothing was written to the store",
        markup=False,
        width=WIDTH,
    )


@contextmanager
def _ticks_progress() -> Iterator[Callable[[int, int], None] | None]:
    """On a terminal, a progress bar of the ticks done (with the time left) on stderr; else none."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("simulating"), BarColumn(), MofNCompleteColumn(), TextColumn("ticks"), TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task("ticks", total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def preview(
    playbook: Annotated[str | None, typer.Argument(help="The playbook id (not needed with --send-key).")] = None,
    step: Annotated[str | None, typer.Option(help="Only this email step.")] = None,
    contact: Annotated[int | None, typer.Option(help="Render for this contact id.")] = None,
    folder: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path("preview"),
    samples: Annotated[int, typer.Option(help="Sample contacts per locale.")] = 2,
    arm: Annotated[str | None, typer.Option(help="Only this experiment arm (default: every arm).")] = None,
    send_key: Annotated[str | None, typer.Option(help="Show what the email with this send key was.")] = None,
    now: Annotated[str | None, typer.Option(help="Whom the playbook reaches at this moment (ISO 8601, UTC).")] = None,
) -> None:
    """Render every email step × arm × locale of a playbook for contacts it reaches, or the email
    one contact was sent (--send-key), with a side-by-side review sheet; nothing is sent."""
    from engine.cli.preview_output import show_previews
    from engine.preview import PreviewError, preview_sent
    from engine.preview import preview as render_previews
    from engine.spec.steps import EmailStep
    from engine.tick.stages import team_sender

    settings = load_settings()
    project = project_or_exit(settings)
    playbooks = project.by_id()
    if playbook is None and send_key is None:
        err.print("error: name a playbook, or a send key with --send-key", markup=False)
        raise typer.Exit(2)
    compiled = playbooks.get(playbook) if playbook is not None else None
    if playbook is not None and compiled is None:
        unknown("playbook", playbook, playbooks)
    if step is not None and compiled is not None:
        # Checked here: an unknown id would otherwise render nothing and look like success.
        emails = [s.id for s in compiled.steps if isinstance(s.spec, EmailStep)]
        if step not in emails:
            unknown("email step", step, emails, where=f"playbook '{playbook}' has ", listed_as="its email steps")
    moment = parse_now(now)
    engine = open_store(settings.database_url)
    try:
        with engine.connect() as conn:
            if send_key is not None:
                report = preview_sent(conn, playbooks, project.renderer, folder, send_key, team=team_sender(project))
            else:
                assert compiled is not None
                report = render_previews(
                    conn, compiled, project.renderer, folder, step, contact, samples,
                    now=moment, arm=arm, team=team_sender(project),
                )  # fmt: skip
    except PreviewError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not show_previews(report, Path.cwd()):
        raise typer.Exit(1)
