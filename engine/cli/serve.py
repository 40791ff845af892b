"""`touchflow serve`: the signed SendGrid Event Webhook and the signed unsubscribe pages."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from engine.cli.common import err, open_store
from engine.config import load_settings


def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
) -> None:
    """Serve the SendGrid Event Webhook (`POST /webhooks/sendgrid`) and the signed unsubscribe
    pages (`/unsubscribe`), and the Segment-compatible ingestion API (`/v1/identify`, `/v1/group`,
    `/v1/track`, `/v1/batch`; write keys from `touchflow keys create`). The webhook's verification
    key comes from TOUCHFLOW_SENDGRID_WEBHOOK_KEY (the public key SendGrid shows for the signed
    webhook); without it the webhook is off and the rest is served."""
    import uvicorn

    from engine.console import create_console
    from engine.unsubscribe import load_links
    from engine.webhooks.app import create_app

    key = os.environ.get("TOUCHFLOW_SENDGRID_WEBHOOK_KEY") or None
    if key is None:
        err.print(
            "warning: TOUCHFLOW_SENDGRID_WEBHOOK_KEY is not set: the event webhook is off, "
            "only /unsubscribe, the ingestion API (/v1/...) and /healthz are served",
            markup=False,
        )
    settings = load_settings()
    engine = open_store(settings.database_url)
    try:
        application = create_app(engine, key, links=load_links(settings.project_dir))
        # The console (/login, /playbooks, …) in front; every other path falls through to the webhook app.
        application = create_console(engine, settings, fallback=application)
    except ValueError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(2) from None
    uvicorn.run(application, host=host, port=port, log_level="info")
