"""`touchflow preview`: every email step × locale of a playbook, rendered for sample contacts.

What a marketer reviews before anything goes out: the subject, the HTML and the text part, with
the real layout and real customer data, written as files (and an index.html to click through).
Nothing is sent and nothing in the store changes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from engine.compile import CompiledPlaybook
from engine.dispatch.context import template_context
from engine.render import EmailRenderer, RenderError, locale_chain
from engine.spec import EmailStep
from engine.store.models import accounts, contacts, csms


@dataclass(frozen=True)
class Preview:
    """One rendered variant, or why it failed."""

    step: str
    locale: str
    contact_id: int
    subject: str
    files: tuple[str, ...]
    error: str | None = None


def preview(
    conn: Connection,
    playbook: CompiledPlaybook,
    renderer: EmailRenderer,
    out: Path,
    step: str | None = None,
    contact_id: int | None = None,
    samples: int = 2,
) -> list[Preview]:
    """Render every email step (or `step`) in every locale its template has, for `samples`
    contacts of that locale (or for `contact_id`), into `out/<playbook>/<step>/`."""
    results: list[Preview] = []
    for compiled in playbook.steps:
        if not isinstance(compiled.spec, EmailStep) or (step is not None and compiled.id != step):
            continue
        email = compiled.spec.email
        for locale in renderer.variants(email.template) or [""]:
            people = _samples(conn, locale, contact_id, samples, list(email.to.role) if email.to else None)
            for person in people:
                results.append(_render_one(conn, playbook, renderer, compiled.id, email, locale, person, out))
    _index(out / playbook.id, results)
    return results


def _samples(
    conn: Connection, locale: str, contact_id: int | None, n: int, roles: list[str] | None
) -> list[dict[str, Any]]:
    stmt = select(contacts).order_by(contacts.c.id)
    if contact_id is not None:
        stmt = stmt.where(contacts.c.id == contact_id)
    else:
        if roles:
            stmt = stmt.where(contacts.c.role.in_(roles))
        if locale:
            owner = select(accounts.c.id).where(accounts.c.locale == locale)
            stmt = stmt.where(
                (contacts.c.locale == locale) | (contacts.c.locale.is_(None) & contacts.c.account_id.in_(owner))
            )
        stmt = stmt.limit(n)
    return [dict(r._mapping) for r in conn.execute(stmt)]


def _render_one(
    conn: Connection,
    playbook: CompiledPlaybook,
    renderer: EmailRenderer,
    step_id: str,
    email: Any,
    locale: str,
    person: dict[str, Any],
    out: Path,
) -> Preview:
    account = dict(conn.execute(select(accounts).where(accounts.c.id == person["account_id"])).one()._mapping)
    csm_row = conn.execute(select(csms).where(csms.c.id == account["csm_id"])).first() if account["csm_id"] else None
    csm = dict(csm_row._mapping) if csm_row else None
    context = template_context(
        account,
        person,
        csm,
        sender_kind=email.from_,
        playbook=playbook,
        step_id=step_id,
        send_key=f"preview-{person['id']}",
    )
    chain = [locale] if locale else locale_chain(person.get("locale"), account.get("locale"))
    folder = out / playbook.id / step_id
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{locale or 'default'}-contact-{person['id']}"
    try:
        rendered = renderer.render(email.template, chain, context)
    except RenderError as exc:
        return Preview(step_id, locale, person["id"], "", (), str(exc))
    (folder / f"{stem}.html").write_text(rendered.html, encoding="utf-8")
    (folder / f"{stem}.txt").write_text(f"Subject: {rendered.subject}\n\n{rendered.text}", encoding="utf-8")
    files = (str(folder / f"{stem}.html"), str(folder / f"{stem}.txt"))
    return Preview(step_id, rendered.locale, person["id"], rendered.subject, files)


def _index(folder: Path, results: list[Preview]) -> None:
    folder.mkdir(parents=True, exist_ok=True)

    def link(path: str, label: str) -> str:
        return f"<a href='{html.escape(Path(path).relative_to(folder).as_posix())}'>{label}</a>"

    rows = "".join(
        f"<tr><td>{html.escape(r.step)}</td><td>{html.escape(r.locale or 'default')}</td><td>{r.contact_id}</td>"
        + (
            f"<td>{html.escape(r.subject)}</td><td>{link(r.files[0], 'html')} {link(r.files[1], 'text')}</td>"
            if not r.error
            else f"<td colspan=2>error: {html.escape(r.error)}</td>"
        )
        + "</tr>"
        for r in results
    )
    page = (
        "<!doctype html><meta charset='utf-8'><title>Preview</title>"
        "<table border=1 cellpadding=4><tr><th>step</th><th>locale</th><th>contact</th><th>subject</th><th></th></tr>"
        f"{rows}</table>"
    )
    (folder / "index.html").write_text(page, encoding="utf-8")
