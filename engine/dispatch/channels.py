"""Email channels behind one small Protocol. The outbox writes .eml files any mail client opens."""

from __future__ import annotations

import email.policy
import html
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from pathlib import Path
from typing import Protocol

from engine.render import RenderedEmail


@dataclass(frozen=True)
class OutgoingEmail:
    """A rendered email addressed to one contact, with the ledger's send key."""

    send_key: str
    sender_name: str
    sender_email: str
    to_name: str
    to_email: str
    rendered: RenderedEmail
    playbook_id: str
    step_id: str
    at: datetime
    variant: str | None = None
    unsubscribe_url: str | None = None
    """The signed link; also sent as List-Unsubscribe with one-click (RFC 8058)."""

    def list_unsubscribe_headers(self) -> dict[str, str]:
        """List-Unsubscribe headers: mail clients show an unsubscribe button and may POST to it."""
        if not self.unsubscribe_url:
            return {}
        return {"List-Unsubscribe": f"<{self.unsubscribe_url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

    def to_mime(self) -> EmailMessage:
        """A multipart/alternative message (text, then HTML) with Touchflow's tracing headers."""
        msg = EmailMessage()
        msg["From"] = Address(self.sender_name, addr_spec=self.sender_email)
        msg["To"] = Address(self.to_name, addr_spec=self.to_email)
        msg["Subject"] = self.rendered.subject
        msg["Date"] = format_datetime(self.at.replace(tzinfo=UTC))
        msg["Message-ID"] = make_msgid(idstring=self.send_key, domain="touchflow.local")
        msg["X-Touchflow-Send-Key"] = self.send_key
        msg["X-Touchflow-Playbook"] = self.playbook_id
        msg["X-Touchflow-Step"] = self.step_id
        for name, value in self.list_unsubscribe_headers().items():
            msg[name] = value
        msg.set_content(self.rendered.text)
        msg.add_alternative(self.rendered.html, subtype="html")
        return msg


class SendError(Exception):
    """A channel's failure, classified for the ledger.

    `retry`: nothing was delivered (429, 5xx, no connection): send again later.
    `permanent`: the provider refused this message (other 4xx): fail it with the reason.
    `ambiguous`: the request may have gone out (timeout, dropped connection): never resend;
    the row becomes `unknown` and is reconciled from provider events.
    """

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class EmailChannel(Protocol):
    """Delivers one email; returns the provider's message id. Raises SendError (or OSError)."""

    name: str

    def send(self, email: OutgoingEmail) -> str: ...


class OutboxChannel:
    """The default channel: one `<send_key>.eml` per message under the outbox directory.

    Files are named by send key and written atomically, so a retry after a crash rewrites the
    same file instead of adding a second message.
    """

    name = "outbox"

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send(self, email: OutgoingEmail) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        msg = email.to_mime()
        target = self.directory / f"{email.send_key}.eml"
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".eml")
        with os.fdopen(fd, "wb") as fh:
            fh.write(msg.as_bytes())
        os.replace(tmp, target)
        return str(msg["Message-ID"])

    def write_index(self) -> Path:
        """`index.html` listing every message of the outbox, newest first, linking each .eml."""
        self.directory.mkdir(parents=True, exist_ok=True)
        parser = BytesHeaderParser(policy=email.policy.default)
        entries = []
        for path in self.directory.glob("*.eml"):
            with path.open("rb") as fh:
                headers = parser.parse(fh)
            entries.append((str(headers["Date"] or ""), path.name, headers))
        entries.sort(
            key=lambda e: parsedate_to_datetime(e[0]) if e[0] else datetime.min.replace(tzinfo=UTC), reverse=True
        )
        rows = "".join(
            "<tr>"
            + "".join(
                f"<td>{html.escape(str(h[k] or ''))}</td>" for k in ("Date", "X-Touchflow-Playbook", "To", "Subject")
            )
            + f"<td><a href='{html.escape(name)}'>open</a></td></tr>"
            for _, name, h in entries
        )
        page = (
            "<!doctype html><meta charset='utf-8'><title>Touchflow outbox</title>"
            f"<h1>Outbox: {len(entries)} messages</h1><table border=1 cellpadding=4>"
            "<tr><th>date</th><th>playbook</th><th>to</th><th>subject</th><th></th></tr>"
            f"{rows}</table>"
        )
        index = self.directory / "index.html"
        index.write_text(page, encoding="utf-8")
        return index


class NullChannel:
    """Renders but delivers nothing (dry runs, simulations); keeps nothing, so memory stays flat."""

    name = "dry-run"

    def send(self, email: OutgoingEmail) -> str:
        return f"dry-run:{email.send_key}"
