"""The `touchflow` application: every command of engine/cli/ under one Typer app. Each command
parses options, calls the engine, and prints; the order here is the order of `touchflow --help`."""

from __future__ import annotations

import typer

from engine.cli import authoring, data, demo, reports, run, serve
from engine.cli.bench import bench
from engine.cli.experiments import experiments

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Touchflow: tech-touch customer-success playbooks.",
)
app.command()(authoring.validate)
app.command()(authoring.schema)
app.command()(run.migrate)
app.command("demo-data")(demo.demo_data)
app.command("import")(data.import_data)
app.command()(run.run)
app.command()(authoring.simulate)
app.command()(authoring.preview)
app.command()(serve.serve)
app.command("demo-engagement")(demo.demo_engagement)
app.command()(reports.audit)
app.add_typer(experiments, name="experiments")
app.add_typer(bench, name="bench")


def main() -> None:  # pragma: no cover - console entry point
    """Run the command line."""
    app()
