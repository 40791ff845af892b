"""The SMTP channel against a real SMTP server on loopback (aiosmtpd), with and without STARTTLS."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import Engine, select

from engine import tick
from engine.dispatch.channels import OutgoingEmail, SendError
from engine.dispatch.factory import make_channel
from engine.dispatch.smtp_channel import SmtpChannel
from engine.render import RenderedEmail
from engine.store.models import ledger
from tests.factories import Store, project

NOW = dt.datetime(2026, 11, 23, 9, 0)


class Inbox:
    """An aiosmtpd handler that keeps messages, or answers RCPT with a chosen code."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.rcpt_answer: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.rcpt_answer:
            return self.rcpt_answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted"


def _tls_pair(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp / "cert.pem", tmp / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert_file, key_file)
    client = ssl.create_default_context(cafile=str(cert_file))
    return server, client


def _free_port() -> int:
    # aiosmtpd's Controller connects to its own port to know it is up: it needs a real one.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def inbox() -> Iterator[tuple[Inbox, int]]:
    handler = Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def email() -> OutgoingEmail:
    rendered = RenderedEmail("Hello", "<p>Hi</p>", "Hi\n", "en", "hello.en.html")
    return OutgoingEmail(
        "key123", "Team", "team@touchflow.example", "Kim", "kim@acme.example", rendered, "pb", "s", NOW
    )


def test_sends_a_multipart_message(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    message_id = SmtpChannel("127.0.0.1", port, 5, starttls=False).send(email())
    (received,) = handler.messages
    assert received["Subject"] == "Hello" and received["To"] == "Kim <kim@acme.example>"
    assert received["X-Touchflow-Send-Key"] == "key123" and received["Message-ID"] == message_id
    assert received.get_body(("plain",)).get_content().strip() == "Hi"


def test_starttls(tmp_path: Path) -> None:
    server_tls, client_tls = _tls_pair(tmp_path)
    handler = Inbox()
    port = _free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True)
    controller.start()
    try:
        channel = SmtpChannel("127.0.0.1", port, 5, starttls=True, tls_context=client_tls)
        channel.send(email())
        assert len(handler.messages) == 1
        with pytest.raises(SendError) as refused:  # the server insists on STARTTLS
            SmtpChannel("127.0.0.1", port, 5, starttls=False).send(email())
        assert refused.value.kind == "permanent"
    finally:
        controller.stop()


def test_refusals_are_classified(inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    channel = SmtpChannel("127.0.0.1", port, 5, starttls=False)
    handler.rcpt_answer = "550 5.1.1 no such user"
    with pytest.raises(SendError) as permanent:
        channel.send(email())
    assert permanent.value.kind == "permanent" and "550" in str(permanent.value)
    handler.rcpt_answer = "451 4.3.0 try again later"
    with pytest.raises(SendError) as later:
        channel.send(email())
    assert later.value.kind in ("retry", "permanent") and "451" in str(later.value)
    with pytest.raises(SendError) as nobody:
        SmtpChannel("127.0.0.1", 1, 1, starttls=False).send(email())
    assert nobody.value.kind == "retry"


def test_a_tick_through_smtp(db: Engine, db_url: str, tmp_path: Path, inbox: tuple[Inbox, int]) -> None:
    handler, port = inbox
    store = Store(db, NOW)
    acc = store.account(renewal_date=(NOW + dt.timedelta(days=90)).date())
    store.contact(acc, "admin")
    store.contact(acc, "champion")
    proj = project(tmp_path, db_url)
    (proj.settings.project_dir / "touchflow.yaml").write_text(
        f"channel: smtp\nsmtp: {{host: 127.0.0.1, port: {port}, starttls: false}}\n", encoding="utf-8"
    )
    proj = project(tmp_path, db_url)
    configured = make_channel(proj.delivery, proj.settings.outbox_dir)
    tick.evaluate_and_advance(db, proj, "renewal-90d", NOW, "run", configured.channel.name)
    while ids := tick.claim_batch(db, NOW, playbook_ids=["renewal-90d"]):
        tick.deliver_batch(db, proj, ids, configured.channel, NOW, "run", settings=configured.settings)
    assert len(handler.messages) == 2
    with db.connect() as conn:
        assert [r.status for r in conn.execute(select(ledger))] == ["sent", "sent"]
