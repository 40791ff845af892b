"""`touchflow keys`: the write keys of the ingestion API (`touchflow serve`'s `/v1/...`)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from engine.cli.common import Format, choice, err, open_store, out, parse_now
from engine.config import load_settings
from engine.ingest.api.keys import KeyProblem, create_key, list_keys, revoke_key
from engine.output import as_json_lines
from engine.problems import did_you_mean

keys = typer.Typer(no_args_is_help=True, help="Write keys of the ingestion API (Segment's Tracking API).")


@keys.command("create")
def keys_create(name: Annotated[str, typer.Argument(help="What sends with it, e.g. segment-prod.")]) -> None:
    """Create a write key called NAME; the key is printed alone on the last line, this once only."""
    engine = open_store(load_settings().database_url)
    try:
        with engine.begin() as conn:
            key = create_key(conn, name, parse_now(None))
    except KeyProblem as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(1) from None
    out.print(
        f"Write key '{name}' created. Send it as the HTTP Basic user name (empty password); "
        "it is shown only now, and only its hash is stored:",
        markup=False,
        soft_wrap=True,
    )
    sys.stdout.flush()
    sys.stdout.write(key + "\n")


@keys.command("list")
def keys_list(
    fmt: Annotated[
        Format, typer.Option("--format", parser=choice(Format, "--format"), help="table, csv or json (JSON lines).")
    ] = Format.table,
) -> None:
    """Every write key: name, prefix, created, revoked (never the key)."""
    engine = open_store(load_settings().database_url)
    with engine.connect() as conn:
        rows: list[dict[str, str | None]] = [
            {
                "name": k.name,
                "prefix": k.prefix,
                "created": k.created_at.isoformat(timespec="seconds"),
                "revoked": k.revoked_at.isoformat(timespec="seconds") if k.revoked_at else None,
            }
            for k in list_keys(conn)
        ]
    if fmt is Format.json:
        sys.stdout.writelines(as_json_lines(rows))
        return
    if fmt is Format.csv:
        from engine.output import as_csv

        sys.stdout.writelines(as_csv(rows, ["name", "prefix", "created", "revoked"]))
        return
    if not rows:
        out.print("no write keys yet: touchflow keys create NAME", markup=False)
        return
    width = max(len(r["name"] or "") for r in rows)
    out.print(f"{'name':<{width}}  prefix        created              revoked", markup=False)
    for r in rows:
        out.print(
            f"{r['name'] or '':<{width}}  {r['prefix'] or '':<12}  {r['created']:<19}  {r['revoked'] or '-'}",
            markup=False,
        )


@keys.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke the write key called NAME: its next request is refused (401)."""
    engine = open_store(load_settings().database_url)
    with engine.begin() as conn:
        found = revoke_key(conn, name, parse_now(None))
        names = [k.name for k in list_keys(conn)] if not found else []
    if not found:
        listed = ", ".join(names) if names else "none yet (`touchflow keys create NAME`)"
        err.print(f"error: no write key named '{name}'{did_you_mean(name, names)}; keys: {listed}", markup=False)
        raise typer.Exit(1)
    out.print(f"Write key '{name}' revoked.", markup=False)
