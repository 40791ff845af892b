"""Demo-only commands: a synthetic customer store, and engagement events for the sent emails."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import NowOption, err, open_store, out, parse_now, report_and_exit, shown_url
from engine.config import load_settings
from engine.problems import ProblemsFound


def demo_data(
    accounts: Annotated[int, typer.Option(help="How many accounts to generate.")] = 500,
    seed: Annotated[int, typer.Option(help="Random seed: same seed and --now, same store.")] = 7,
    now: NowOption = None,
    export: Annotated[
        Path | None,
        typer.Option("--export", metavar="DIR", help="Also write the store as import files (docs/data.md) into DIR."),
    ] = None,
) -> None:
    """Replace the store's contents with a realistic synthetic B2B SaaS customer base."""
    from demo.data import generate

    settings = load_settings()
    at = parse_now(now).replace(hour=0, minute=0, second=0)
    engine = open_store(settings.database_url, create=True)
    started = time.perf_counter()
    summary = generate(engine, accounts=accounts, seed=seed, now=at)
    elapsed = time.perf_counter() - started
    out.print(
        f"demo data as of {at.date()}: {summary.accounts} accounts, {summary.contacts} contacts, "
        f"{summary.events} events, {summary.csms} CSMs in {elapsed:.1f} s → {shown_url(settings.database_url)}",
        markup=False,
    )
    if export is not None:
        from demo.export import export_store

        done = export_store(engine, export)
        out.print(
            f"exported to {export}/: {done.csms} CSMs, {done.accounts} accounts, {done.contacts} contacts, "
            f"{done.events} events, {done.suppressions} suppressions (left out: {done.left_out_contacts} contacts "
            f"whose address an import refuses, with their {done.left_out_events} events)",
            markup=False,
        )


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
