"""`touchflow experiments`: `report [PLAYBOOK]` (the default sub-command) compares the arms of every
email experiment with the control; `promote PLAYBOOK STEP ARM` gives one arm all the weight.

A sub-command's name wins over a playbook id: `touchflow experiments promote` is always the
sub-command, and a playbook whose id is `promote` or `report` is reported on with
`touchflow experiments report promote`."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from engine.cli.common import Format, UsageLine, choice, err, open_store, out, project_or_exit
from engine.cli.layout import print_rows
from engine.config import load_settings

if TYPE_CHECKING:
    from engine.experiments.report import ExperimentResult


PROMOTE_USAGE = "usage: touchflow experiments promote PLAYBOOK STEP ARM"


class Metric(StrEnum):
    """What arms are compared on (engine/spec/steps.py METRICS), or `all` of them."""

    delivered = "delivered"
    opened = "opened"
    clicked = "clicked"
    converted = "converted"
    unsubscribed = "unsubscribed"
    bounced = "bounced"
    all = "all"


class ReportByDefault(TyperGroup):
    """`experiments [PLAYBOOK] [OPTIONS]` means `experiments report …`: whatever does not start
    with a sub-command's name (or --help) is the report's."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Route to `report` when the first word is no sub-command."""
        if not args or (args[0] not in self.commands and args[0] not in ctx.help_option_names):
            args = ["report", *args]
        return super().parse_args(ctx, args)


class PromoteCommand(TyperCommand):
    """`promote` without its three words says how it is used, in one line."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Parse; a missing PLAYBOOK, STEP or ARM is a usage error that shows the whole form."""
        given = list(args)  # the parser consumes `args`
        try:
            return super().parse_args(ctx, args)
        except typer.BadParameter as exc:
            if exc.param is None or exc.param.param_type_name != "argument":
                raise
            # Only `experiments promote` alone could have meant the report of a playbook so named.
            hint = "; to report on a playbook named 'promote': touchflow experiments report promote"
            missing = exc.param.metavar or str(exc.param.name).upper()
            raise UsageLine(f"{PROMOTE_USAGE} (missing {missing}){'' if given else hint}", ctx=ctx) from None


experiments = typer.Typer(
    cls=ReportByDefault,
    add_completion=False,
    subcommand_metavar="[report] [PLAYBOOK] | promote PLAYBOOK STEP ARM",
    help="Compare the arms of every email experiment with the control, or promote a winning arm.\n\n"
    "Without a sub-command, the report: `experiments [PLAYBOOK]` is `experiments report [PLAYBOOK]`. "
    "A sub-command's name wins over a playbook id: the report of a playbook named promote is "
    "`experiments report promote`.",
)


@experiments.command("report", context_settings={"allow_extra_args": True})
def report(
    ctx: typer.Context,
    playbook: Annotated[
        str | None,
        typer.Argument(
            metavar="PLAYBOOK", help="A playbook id to report on (default: every playbook).", show_default=False
        ),
    ] = None,
    metric: Annotated[
        Metric | None,
        typer.Option(
            help="Compare on this metric, or all (default: each experiment's own).",
            parser=choice(Metric, "--metric"),
        ),
    ] = None,
    fmt: Annotated[
        Format,
        typer.Option(
            "--format",
            help="How to print (csv, json: one row or object per line per arm).",
            parser=choice(Format, "--format"),
        ),
    ] = Format.table,
) -> None:
    """Each arm's rate, 95% interval, lift, Holm-corrected p-value and verdict."""
    from engine.experiments.report import ReportError

    if ctx.args:  # extra words are allowed through to say what was meant
        words = [playbook or "", *ctx.args]  # the argument took the first word
        err.print(
            f"error: give at most one playbook id, not {len(words)} ({' '.join(words)}); "
            "to promote an arm: touchflow experiments promote PLAYBOOK STEP ARM",
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    settings = load_settings()
    project = project_or_exit(settings)
    from engine.experiments.present import all_rows
    from engine.experiments.report import FIELDS, experiment_report
    from engine.output import as_csv, as_json_lines

    engine = open_store(settings.database_url)
    try:
        with engine.connect() as conn:
            results = experiment_report(conn, project, playbook, metric.value if metric else None)
    except ReportError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(2) from None
    if not results:
        found = f"playbook '{playbook}' has no" if playbook else "no playbook has an"
        message = f"{found} email step with an experiment (add `experiment:` with arms to an email step)"
        (out if fmt is Format.table else err).print(message, markup=False, soft_wrap=True)
    if fmt is not Format.table:
        rows = all_rows(results)
        sys.stdout.writelines(as_json_lines(rows) if fmt is Format.json else as_csv(rows, FIELDS))
        return
    _print_tables(results)


def _print_tables(results: list[ExperimentResult]) -> None:
    """Per experiment: its heading and verdict, the arms on its metric, then every metric at a glance;
    each table a block per arm when it does not fit the terminal (the verdict on its own line)."""
    from engine.experiments.present import ARMS_LAYOUT, OVERVIEW_LAYOUT, arm_rows, heading, overview

    for result in results:
        out.print(Text(heading(result), style="bold", overflow="fold"))
        out.print(Text(result.summary, overflow="fold"))
        print_rows(out, ARMS_LAYOUT, arm_rows(result))
        if result.declared:  # every metric at a glance, under the experiment's own
            title = "every metric per arm (enrolled, sent: counts; the others: rates)"
            print_rows(out, OVERVIEW_LAYOUT, overview(result), title)
        out.print("")


@experiments.command("promote", cls=PromoteCommand)
def promote(
    playbook: Annotated[str, typer.Argument(metavar="PLAYBOOK", help="The playbook id.", show_default=False)],
    step: Annotated[str, typer.Argument(metavar="STEP", help="The email step's id.", show_default=False)],
    arm: Annotated[str, typer.Argument(metavar="ARM", help="The arm that gets all the weight.", show_default=False)],
) -> None:
    """Give ARM all the weight in the playbook's file, keeping comments and formatting; review
    with git diff, commit."""
    from engine.experiments.promote import PromoteError
    from engine.experiments.promote import promote as promote_arm
    from engine.experiments.report import ReportError, find_playbook_file

    settings = load_settings()
    try:
        path = find_playbook_file(settings.playbooks_dir, playbook)
        result = promote_arm(path, step, arm)
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
