"""The `touchflow` application: every command of engine/cli/ under one Typer app. Each command
parses options, calls the engine, and prints; the order here is the order of `touchflow --help`."""

from __future__ import annotations

import typer

from engine.cli import approvals, authoring, catalog, data, demo, reports, run, serve, status
from engine.cli import funnel as funnel_cli
from engine.cli import portfolio as portfolio_cli
from engine.cli.bench import bench
from engine.cli.experiments import experiments
from engine.cli.health import health
from engine.cli.keys import keys
from engine.cli.setup import setup
from engine.cli.tasks import tasks
from engine.cli.users import users

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Touchflow: tech-touch customer-success playbooks.",
)
app.command()(authoring.validate)
app.command()(authoring.schema)
app.command()(catalog.catalog)
app.command()(run.migrate)
app.command("demo-data")(demo.demo_data)
app.command("import")(data.import_data)
app.command()(run.run)
app.command()(authoring.simulate)
app.command()(authoring.preview)
app.command()(serve.serve)
app.add_typer(keys, name="keys")
app.command("demo-engagement")(demo.demo_engagement)
app.command()(reports.audit)
app.command()(status.status)
app.command()(status.resume)
app.add_typer(experiments, name="experiments")
app.add_typer(bench, name="bench")
app.add_typer(health, name="health")
app.add_typer(users, name="users")
approvals.register(app)
app.command()(funnel_cli.funnel)
app.add_typer(tasks, name="tasks")
app.add_typer(setup, name="setup")
app.command()(portfolio_cli.portfolio)


def main() -> None:  # pragma: no cover - console entry point
    """Run the command line."""
    app()
