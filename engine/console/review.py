"""Variant review and test send.

For each email step of a playbook, every arm × locale rendered as the recipient would see it —
subject, sender, HTML and text part — for a sample contact the playbook really reaches, by
`engine.preview` (dispatch's own rendering). The HTML goes into `<iframe sandbox srcdoc>` (no
scripts, no same origin). A test send renders the same variant again and sends it to the signed-in
user's own address through the configured channel: audited `test_send`, never a ledger row, so
neither caps nor experiments ever count it.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path

from starlette.responses import Response

from engine.audit import Decision, Reason, audit_row, record
from engine.compile import CompiledPlaybook
from engine.console.checks import email_checks
from engine.console.pages import PageContext, ProjectView
from engine.console.params import whole_number
from engine.console.permissions import Page
from engine.dispatch.channels import OutgoingEmail, SendError
from engine.dispatch.factory import ChannelConfigError, make_channel
from engine.preview import Preview, PreviewError, preview
from engine.render import RenderedEmail, RenderError

WIDTHS = {"desktop": 640, "phone": 375}


@dataclass(frozen=True)
class Shown:
    """One rendered variant as the page shows it."""

    preview: Preview
    html: str
    text: str
    checks: list[tuple[bool, str]]


def _render_all(
    ctx: PageContext,
    view: ProjectView,
    pb: CompiledPlaybook,
    step: str | None = None,
    arm: str | None = None,
    contact_id: int | None = None,
) -> tuple[list[Shown], list[str]]:
    """Every (or the chosen) step × arm × locale, one sample contact each, read back from preview's files."""
    team = ("Touchflow", "team@example.com")
    if view.delivery is not None:
        team = (view.delivery.team_sender.name, view.delivery.team_sender.email)
    with tempfile.TemporaryDirectory(prefix="touchflow-console-") as out, ctx.console.engine.connect() as conn:
        report = preview(
            conn,
            pb,
            view.renderer,
            Path(out),
            step=step,
            contact_id=contact_id,
            samples=1,
            now=ctx.console.clock(),
            arm=arm,
            team=team,
            links=None,
        )
        shown = []
        for p in report.previews:
            html = Path(p.files[0]).read_text(encoding="utf-8") if p.files else ""
            text = Path(p.files[1]).read_text(encoding="utf-8").split("\n\n", 1)[-1] if p.files else ""
            shown.append(Shown(p, html, text, email_checks(html) if html else []))
    return shown, list(report.notes)


def review(ctx: PageContext, message: str | None = None, status: int = 200) -> Response:
    """Every email variant of the playbook side by side, at desktop or phone width."""
    view = ctx.console.project()
    pb = view.playbooks.get(ctx.request.path_params["playbook_id"])
    if pb is None:
        return ctx.render("error.html", {"status": 404, "message": "No such playbook."}, status=404)
    width = ctx.request.query_params.get("width")
    width = width if width in WIDTHS else "desktop"
    try:
        shown, notes = _render_all(ctx, view, pb)
    except PreviewError as exc:
        return ctx.render("error.html", {"status": 400, "message": str(exc)}, status=400)
    steps: dict[str, dict[str, object]] = {}
    for item in shown:
        table = steps.setdefault(item.preview.step, {"arms": [], "locales": [], "cells": {}})
        arms, locales, cells = table["arms"], table["locales"], table["cells"]
        assert isinstance(arms, list) and isinstance(locales, list) and isinstance(cells, dict)
        if item.preview.arm not in arms:
            arms.append(item.preview.arm)
        if item.preview.locale not in locales:
            locales.append(item.preview.locale)
        cells[(item.preview.locale, item.preview.arm)] = item
    values = {
        "title": f"Review {pb.spec.name}",
        "pb": pb,
        "steps": steps,
        "notes": notes,
        "width": width,
        "pixels": WIDTHS[width],
        "message": message,
    }
    return ctx.render("review.html", values, status=status)


def test_send(ctx: PageContext) -> Response:
    """Send one variant to the signed-in user's own address through the configured channel."""
    view = ctx.console.project()
    pb = view.playbooks.get(ctx.request.path_params["playbook_id"])
    if pb is None:
        return ctx.render("error.html", {"status": 404, "message": "No such playbook."}, status=404)
    step, arm, locale = ctx.form.get("step", ""), ctx.form.get("arm") or None, ctx.form.get("locale", "")
    contact_id = whole_number(ctx.form.get("contact"), 0)
    if contact_id is None or pb.index_of(step) is None:
        return review(ctx, "Nothing was sent: the form does not name a step and a sample contact.", status=400)
    if view.delivery is None:
        return review(ctx, f"Nothing was sent: {view.settings_error}", status=409)
    try:
        shown, _ = _render_all(ctx, view, pb, step=step, arm=arm, contact_id=contact_id)
    except PreviewError as exc:
        return review(ctx, f"Nothing was sent: {exc}", status=400)
    chosen = next((s for s in shown if s.preview.locale == locale and s.preview.error is None), None)
    if chosen is None:
        return review(ctx, "Nothing was sent: that variant does not render for this contact.", status=400)
    user = ctx.session.user
    now = ctx.console.clock()
    sender_name, sender_email = parseaddr(chosen.preview.sender)
    rendered = RenderedEmail(chosen.preview.subject, chosen.html, chosen.text, locale, "")
    key = f"test-{secrets.token_hex(12)}"
    try:
        configured = make_channel(view.delivery, ctx.console.settings.outbox_dir)
        email = OutgoingEmail(
            send_key=key,
            sender_name=sender_name,
            sender_email=sender_email,
            to_name="",
            to_email=user.email,
            rendered=rendered,
            playbook_id=pb.id,
            step_id=step,
            at=now,
            variant=arm,
        )
        configured.channel.send(email)
    except (ChannelConfigError, SendError, RenderError, ValueError) as exc:
        return review(ctx, f"The test send failed: {exc}", status=502)
    detail = (
        f"test send to {user.email} by {user.email}: step {step}, arm {arm or '-'}, locale {locale or 'default'}, "
        f"sample contact {contact_id}"
    )
    with ctx.console.engine.begin() as conn:
        record(
            conn,
            [
                audit_row(
                    at=now,
                    run_id=f"console/{key}",
                    playbook_id=pb.id,
                    playbook_version=pb.version,
                    decision=Decision.TEST_SEND,
                    reason=Reason.TEST_SEND,
                    detail=detail,
                    step_id=step,
                    channel=view.delivery.channel,
                    send_key=key,
                    content_hash=rendered.content_hash,
                    variant=arm,
                )
            ],
        )
    return review(ctx, f"Sent to {user.email}: {chosen.preview.subject}")


PAGES = [
    Page("/playbooks/{playbook_id}/review", review, "review", name="review"),
    Page("/playbooks/{playbook_id}/review/send", test_send, "test_send", methods=("POST",), name="test_send"),
]
