"""Signed unsubscribe links: `https://…/unsubscribe?k=<send key>&t=<token>`.

The token is an HMAC-SHA256 of the send key under a secret only Touchflow knows, so a link
cannot be forged or guessed from another one (send keys alone are derived from public facts).

One link unsubscribes the address its message was sent to — never the contact's address as it is
now, which may belong to someone else by the time the link is followed. Dispatch records that
address on the ledger row (`sent_to`) in the same commit that marks the row `sending`, before the
request leaves, so every message that may have been delivered has it. Rows written before the
column existed fall back to the audit trail (the `sent` row's detail names the recipient); when
neither knows, the link unsubscribes nobody and its page says so.

Pages show the address masked (`k***@example.com`): whoever holds a link — a forwarded email,
a shared screenshot — learns no address from it, while the recipient still recognises theirs.

The secret comes from `TOUCHFLOW_UNSUBSCRIBE_SECRET` (every dispatcher and `touchflow serve`
must share it), else from `.touchflow/unsubscribe.key` in the project, created on first use —
enough for one machine, and never committed (`.touchflow/` is ignored).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Row, bindparam, select, update

from engine.addresses import email_problem
from engine.audit import Decision, Reason
from engine.store.models import audit_log, ledger

SECRET_ENV = "TOUCHFLOW_UNSUBSCRIBE_SECRET"
PUBLIC_URL_ENV = "TOUCHFLOW_PUBLIC_URL"
DEFAULT_PUBLIC_URL = "https://app.touchflow.example"
KEY_FILE = Path(".touchflow") / "unsubscribe.key"
_TOKEN_BYTES = 16  # 128 bits: unguessable, and the link stays short


@dataclass(frozen=True)
class UnsubscribeLinks:
    """Makes and checks the signed links of one deployment."""

    base_url: str
    secret: bytes

    def __repr__(self) -> str:  # keeps the secret out of logs and tracebacks
        return f"UnsubscribeLinks(base_url={self.base_url!r})"

    def token(self, send_key: str) -> str:
        """The link's signature for `send_key`."""
        digest = hmac.new(self.secret, send_key.encode(), hashlib.sha256).digest()[:_TOKEN_BYTES]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def url(self, send_key: str) -> str:
        """The unsubscribe link of the message with `send_key`."""
        key = send_key if send_key.isalnum() else quote(send_key, safe="")  # send keys are hex
        return f"{self.base_url}/unsubscribe?k={key}&t={self.token(send_key)}"

    def valid(self, send_key: str, token: str) -> bool:
        """Whether `token` is the signature of `send_key` (compared in constant time)."""
        return bool(send_key) and hmac.compare_digest(self.token(send_key).encode(), token.encode())


def load_links(project_dir: Path | None) -> UnsubscribeLinks:
    """The links of this deployment: the secret from the environment, else the project's key file
    (created when missing); without either, a secret for this process only (previews, tests)."""
    base = os.environ.get(PUBLIC_URL_ENV, DEFAULT_PUBLIC_URL).rstrip("/")
    from_env = os.environ.get(SECRET_ENV, "")
    if from_env:
        return UnsubscribeLinks(base, from_env.encode())
    if project_dir is None:
        return UnsubscribeLinks(base, _PROCESS_SECRET)
    return UnsubscribeLinks(base, _key_file_secret(project_dir / KEY_FILE))


def _key_file_secret(path: Path) -> bytes:
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # never readable by others
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_hex(32) + "\n")
        # link() fails when the file exists: two processes creating it at once agree on the
        # first one's secret, and nobody ever reads a half-written file.
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return path.read_text(encoding="ascii").strip().encode()


_PROCESS_SECRET = secrets.token_bytes(32)


# --- the address a link unsubscribes ------------------------------------------------------------


def record_recipients(conn: Connection, sent: Sequence[tuple[int, str]]) -> None:
    """Write on each ledger row (id, address) the address its email is about to go to. Called in
    the transaction that marks the rows `sending`: committed before any request leaves."""
    if not sent:
        return
    conn.execute(_SENT_TO, [{"row_id": row_id, "address": address} for row_id, address in sent])


_SENT_TO = update(ledger).where(ledger.c.id == bindparam("row_id")).values(sent_to=bindparam("address"))
"""Built once: every window of every dispatch runs it."""


@dataclass(frozen=True)
class Recipient:
    """A message a link names: its ledger row, and the lower-cased address it was sent to (None
    when neither the ledger nor the audit trail knows it)."""

    message: Row[Any]
    address: str | None


def recipient(conn: Connection, send_key: str) -> Recipient | None:
    """The message `send_key` and the address it went to; None when there is no such message."""
    row = conn.execute(select(ledger).where(ledger.c.send_key == send_key)).first()
    if row is None:
        return None
    address = row.sent_to if row.sent_to and not email_problem(row.sent_to.strip()) else None
    if address is None:
        address = _address_in_audit(conn, send_key)
    return Recipient(row, address.strip().lower() if address else None)


# `<template file> to <address>: <subject>`, as dispatch has always written a `sent` audit row.
# Neither a template name nor a deliverable address holds whitespace.
_SENT_DETAIL = re.compile(r"^\S+ to (?P<address>\S+): ")


def _address_in_audit(conn: Connection, send_key: str) -> str | None:
    """The recipient named by the `sent` audit rows of `send_key` (messages dispatched before the
    ledger recorded it); None unless they name exactly one valid address."""
    query = select(audit_log.c.detail).where(
        audit_log.c.send_key == send_key,
        audit_log.c.decision == Decision.SENT.value,
        audit_log.c.reason == Reason.DELIVERED_TO_CHANNEL.value,
    )
    found = set()
    for detail in conn.execute(query).scalars():
        match = _SENT_DETAIL.match(detail or "")
        if match is None or email_problem(match["address"]):
            return None  # a row not in the expected shape: better no address than a wrong one
        found.add(match["address"].lower())
    return found.pop() if len(found) == 1 else None


def mask_address(address: str) -> str:
    """`address` as a page may show it: the first character of the local part and the domain
    (`k***@example.com`); `***` when it has no `@`."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return "***"
    return f"{local[:1]}***@{domain}"
