"""Commands for writing playbooks: validate, schema, preview, simulate. None of them sends."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from engine.cli.common import connect_or_exit, err, open_store, out, parse_now, project_or_exit, shown_url, unknown
from engine.config import load_settings


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


def schema() -> None:
    """Print the JSON Schema of a playbook file."""
    from engine.schema import playbook_schema_text

    sys.stdout.write(playbook_schema_text())


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


def preview(
    playbook: Annotated[str, typer.Argument(help="The playbook id.")],
    step: Annotated[str | None, typer.Option(help="Only this email step.")] = None,
    contact: Annotated[int | None, typer.Option(help="Render for this contact id.")] = None,
    folder: Annotated[Path, typer.Option("--out", help="Where to write the files.")] = Path("preview"),
    samples: Annotated[int, typer.Option(help="Sample contacts per locale.")] = 2,
) -> None:
    """Render every email step × locale of a playbook for sample contacts; nothing is sent."""
    from engine.preview import preview as render_previews
    from engine.spec.steps import EmailStep

    settings = load_settings()
    project = project_or_exit(settings)
    playbooks = project.by_id()
    compiled = playbooks.get(playbook)
    if compiled is None:
        unknown("playbook", playbook, playbooks)
    if step is not None:
        # Checked here: an unknown id would otherwise render nothing and look like success.
        emails = [s.id for s in compiled.steps if isinstance(s.spec, EmailStep)]
        if step not in emails:
            unknown("email step", step, emails, where=f"playbook '{playbook}' has ", listed_as="its email steps")
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
