"""`touchflow preview`: what a playbook's emails will look like, exactly as dispatch renders them.

Every email step × experiment arm × locale, for contacts the playbook reaches (`samples.py`), or
what one contact was sent (`preview_sent`, by send key). The rendering is dispatch's own: a
ledger-shaped row carries the payload the planner would write (`email_payload`: the arm's
template, subject and sender), and `load_context` / `email_job` / the project's renderer turn it
into the email. Files and a review sheet (`sheet.py`) are written; nothing is sent and nothing in
the store changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import Connection, Row, select

from engine.compile import CompiledPlaybook, CompiledStep
from engine.dispatch.context import BatchContext, email_job, load_context
from engine.dispatch.settings import TEAM_SENDER
from engine.experiments.assign import assign, experiment_id
from engine.plan.steps.email import email_payload
from engine.preview.samples import Candidate, candidates
from engine.preview.sheet import write_sheet
from engine.problems import did_you_mean
from engine.render import EmailRenderer, RenderError, locale_chain
from engine.render.templates import error_location
from engine.spec import EmailStep
from engine.spec.policy import Policy
from engine.spec.steps import Arm
from engine.store.models import ledger
from engine.unsubscribe import UnsubscribeLinks

__all__ = ["Preview", "PreviewError", "PreviewReport", "preview", "preview_sent"]


class PreviewError(Exception):
    """What was asked for does not exist (an arm, a send key): the message lists what does."""


@dataclass(frozen=True)
class Preview:
    """One rendered email (a step, an arm, a locale, a contact), or why it failed."""

    step: str
    locale: str
    contact_id: int
    subject: str
    files: tuple[str, ...]
    error: str | None = None
    arm: str | None = None
    sender: str = ""
    """The From line: `Name <address>`."""
    assigned: bool = True
    """True when this contact's own arm is `arm` (what they will get)."""
    error_at: tuple[str, int] | None = None
    """(template file, line) of a template error."""


@dataclass
class PreviewReport:
    """The previews, what the reader should know about them, and the review sheet's path."""

    previews: list[Preview] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sheet: Path = Path()


@dataclass(frozen=True)
class _Row:
    """The fields of a ledger row dispatch reads to render an email; never written anywhere."""

    playbook_id: str
    step_id: str
    account_id: int
    contact_id: int
    send_key: str
    payload: dict[str, Any]
    variant: str | None


def preview(
    conn: Connection,
    playbook: CompiledPlaybook,
    renderer: EmailRenderer,
    out: Path,
    step: str | None = None,
    contact_id: int | None = None,
    samples: int = 2,
    *,
    now: datetime,
    arm: str | None = None,
    team: tuple[str, str] = TEAM_SENDER,
    links: UnsubscribeLinks | None = None,
) -> PreviewReport:
    """Render every email step (or `step`) × arm (or `arm`) × locale for up to `samples`
    contacts of that locale the playbook reaches at `now` (or for `contact_id`), into
    `out/<playbook>/`, with a review sheet `index.html`. Raises PreviewError for an unknown arm."""
    steps = [s for s in playbook.steps if isinstance(s.spec, EmailStep) and (step is None or s.id == step)]
    _check_arm(playbook, steps, arm)
    pool = candidates(conn, playbook, now, contact_id)
    report = PreviewReport(notes=list(pool.notes))
    planned: list[tuple[_Row, Arm | None, str, bool]] = []
    for compiled in steps:
        spec = cast(EmailStep, compiled.spec).email
        roles = set(spec.to.role) if spec.to is not None else None
        people = [p for p in pool.candidates if roles is None or p.role in roles or contact_id is not None]
        for variant in _arms(spec.experiment.arms if spec.experiment else None, arm, report):
            payload = email_payload(spec, variant)
            for locale in renderer.variants(payload["template"]) or [""]:
                for person in _of_locale(renderer, spec.template, locale, people, samples):
                    row = _Row(
                        playbook.id,
                        compiled.id,
                        person.account_id,
                        person.contact_id,
                        f"preview-{compiled.id}-{person.contact_id}",
                        payload,
                        variant.id if variant else None,
                    )
                    planned.append((row, variant, locale, _assigned(playbook, compiled, variant, person)))
    ctx = load_context(conn, [_as_row(r) for r, _, _, _ in planned], team=team, links=links, policy=Policy())
    for row, _, locale, assigned in planned:
        shown = _render(row, playbook, renderer, ctx, locale_chain(locale), out, locale)
        report.previews.append(replace(shown, assigned=assigned))
    report.sheet = write_sheet(out / playbook.id, playbook.id, report.previews, report.notes)
    return report


def preview_sent(
    conn: Connection,
    playbooks: dict[str, CompiledPlaybook],
    renderer: EmailRenderer,
    out: Path,
    send_key: str,
    *,
    team: tuple[str, str] = TEAM_SENDER,
    links: UnsubscribeLinks | None = None,
) -> PreviewReport:
    """Re-render the email of ledger row `send_key` as dispatch renders it — that row's contact,
    step, arm and payload, the contact's own locale chain — from the customer data as it is now.
    Raises PreviewError when there is no such email or nothing was to be sent."""
    row = conn.execute(select(ledger).where(ledger.c.send_key == send_key, ledger.c.kind == "email")).first()
    if row is None:
        raise PreviewError(f"no email with send key '{send_key}' in the ledger")
    playbook = playbooks.get(row.playbook_id)
    if playbook is None:
        raise PreviewError(f"send key '{send_key}' belongs to playbook '{row.playbook_id}', which is not loaded")
    if row.status == "held_out":
        raise PreviewError(f"send key '{send_key}' is in holdout arm '{row.variant}': nothing was sent")
    ctx = load_context(conn, [row], team=team, links=links, policy=Policy())
    shown = _render(row, playbook, renderer, ctx, None, out, "sent")
    note = f"ledger status {row.status}; rendered from the customer data as it is now"
    report = PreviewReport(previews=[shown], notes=[note])
    report.sheet = write_sheet(out / playbook.id, playbook.id, report.previews, report.notes)
    return report


def _check_arm(playbook: CompiledPlaybook, steps: list[CompiledStep], arm: str | None) -> None:
    if arm is None:
        return
    known = list(
        dict.fromkeys(
            a.id
            for s in steps
            if (experiment := cast(EmailStep, s.spec).email.experiment) is not None
            for a in experiment.arms
            if not a.holdout
        )
    )
    if arm not in known:
        listing = f"its arms: {', '.join(known)}" if known else "it has no experiment"
        raise PreviewError(f"playbook '{playbook.id}' has no arm '{arm}'{did_you_mean(arm, known)}; {listing}")


def _arms(arms: list[Arm] | None, only: str | None, report: PreviewReport) -> list[Arm | None]:
    """The arms to render: every arm that sends (or `only`); a holdout is named, not rendered."""
    if not arms:
        return [None]
    for a in arms:
        note = f"arm '{a.id}' is a holdout: its subjects receive none of this playbook's emails"
        if a.holdout and note not in report.notes:
            report.notes.append(note)
    return [a for a in arms if not a.holdout and (only is None or a.id == only)]


def _of_locale(renderer: EmailRenderer, template: str, locale: str, people: list[Candidate], n: int) -> list[Candidate]:
    """Up to `n` people whose own locale chain picks `locale` of the step's template; any of
    `people` when none does (every locale is still shown)."""
    own: list[Candidate] = []
    for person in people:
        try:
            picked = renderer.pick(template, locale_chain(*person.locales))
        except RenderError:
            continue
        if picked == locale:
            own.append(person)
    return (own or people)[:n]


def _assigned(playbook: CompiledPlaybook, step: CompiledStep, arm: Arm | None, person: Candidate) -> bool:
    experiment = cast(EmailStep, step.spec).email.experiment
    if arm is None or experiment is None:
        return True
    return assign(experiment, experiment_id(experiment, playbook.id, step.id), person.subject).id == arm.id


def _as_row(row: _Row) -> Row[Any]:
    # Dispatch reads ledger rows by attribute only; a preview's row has those attributes.
    return cast(Row[Any], row)


def _render(
    row: _Row | Row[Any],
    playbook: CompiledPlaybook,
    renderer: EmailRenderer,
    ctx: BatchContext,
    chain: list[str] | None,
    out: Path,
    label: str,
) -> Preview:
    """Render one row as dispatch does (with `chain` in place of the contact's, when given) and
    write its files."""

    def shown(subject: str = "", files: tuple[str, ...] = (), **more: Any) -> Preview:
        return Preview(row.step_id, label, row.contact_id, subject, files, arm=row.variant, **more)

    bad = [p for key, p in ctx.problems.items() if key in (("account", row.account_id), ("contact", row.contact_id))]
    if bad:
        return shown(error="; ".join(bad))
    try:
        name, own_chain, context, subject = email_job(cast(Row[Any], row), playbook, ctx)
        rendered = renderer.render(name, chain or own_chain, context, subject=subject)
    except RenderError as exc:
        return shown(error=str(exc), error_at=error_location(exc))
    sender = f"{context['sender']['name']} <{context['sender']['email']}>"
    folder = out / playbook.id / row.step_id
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{row.variant or 'email'}-{label or 'default'}-contact-{row.contact_id}"
    (folder / f"{stem}.html").write_text(rendered.html, encoding="utf-8")
    head = f"From: {sender}\nSubject: {rendered.subject}\n\n"
    (folder / f"{stem}.txt").write_text(head + rendered.text, encoding="utf-8")
    files = (str(folder / f"{stem}.html"), str(folder / f"{stem}.txt"))
    if chain is None:  # a sent email: the locale its contact's chain picked
        return replace(shown(rendered.subject, files, sender=sender), locale=rendered.locale)
    return shown(rendered.subject, files, sender=sender)
