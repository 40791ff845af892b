"""Hostile header values on every channel: the outbox (.eml read back), SMTP (a real aiosmtpd sink)
and SendGrid (the JSON body the real sendgrid library posts to the fake server).

Every header the engine writes is read back as a mail client reads it: exactly the intended headers,
with the intended (decoded) values, and no control character. Values a mail client would decode
into control characters fail their message with the reason; control characters in names become
spaces.
"""

from __future__ import annotations

import base64
import email
import email.policy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, select

from engine import tick
from engine.addresses import email_problem
from engine.dispatch import OutboxChannel, headers
from engine.dispatch.channels import OutgoingEmail
from engine.dispatch.headers import HeaderError
from engine.dispatch.sendgrid_channel import SendGridChannel
from engine.dispatch.smtp_channel import SmtpChannel
from engine.render import RenderedEmail
from engine.store.models import audit_log, ledger
from tests.factories import Store, project
from tests.fakes.sendgrid_server import FakeSendGrid
from tests.test_smtp_channel import _free_port

NOW = datetime(2026, 11, 23, 9, 0)
LINK = "https://app.touchflow.example/unsubscribe?k=key&t=0123456789abcdef"
LONG_LINK = "https://app.touchflow.example/unsubscribe?k=" + "a1b2c3d4" * 12 + "&t=" + "f" * 64

# Anything a mail client may treat as a line break or a control: never in a header it reads.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def b_word(text: str) -> str:
    """`text` as an RFC 2047 B-encoded word, as an attacker would write it into a name."""
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


EVE = "=?utf-8?q?Eve=0D=0AReply-To:_attacker@evil.example=0D=0A=0D=0AInjected_body?="
ACME_BCC = "Acme =?utf-8?q?=0D=0ABcc:_evil@evil.example?="

# (name in the store, the display name a client must read back; None: the message is refused).
NAMES: list[tuple[str, str | None]] = [
    (EVE, None),
    (ACME_BCC, None),
    (b_word("Kim\r\nBcc: evil@evil.example"), None),
    (b_word("Kim") + " " + b_word("\x00Lee"), None),
    ("=?iso-8859-1?q?Kim=00Lee?=", None),
    ("Kim\x00Lee", "Kim Lee"),
    ("Kim\rBcc: evil@evil.example", "Kim Bcc: evil@evil.example"),
    ("Kim\nBcc: evil@evil.example", "Kim Bcc: evil@evil.example"),
    ("Kim\r\n\r\nInjected body", "Kim Injected body"),
    ("Kim\u2028Reply-To: attacker@evil.example", "Kim Reply-To: attacker@evil.example"),
    ("Kim\u2029Lee\x85Park\x1b[31m", "Kim Lee Park [31m"),
    ("Kim\tLee\x0bPark\x0cChoi\x7f", "Kim Lee Park Choi"),
    ("\x00\r\n", ""),
    (
        'O\'Brien, "Annie" <annie@evil.example>; Bcc: x@evil.example',
        'O\'Brien, "Annie" <annie@evil.example>; Bcc: x@evil.example',
    ),
    ('back\\slash "quote', 'back\\slash "quote'),
    ("김민수 (Minsu Kim) — Ünïcødé, Inc.", "김민수 (Minsu Kim) — Ünïcødé, Inc."),
    ("=?utf-8?q?Kim_Lee?=", "=?utf-8?q?Kim_Lee?="),
    ("=? half =?utf-8?q? open", "=? half =?utf-8?q? open"),
    ("Bcc: evil@evil.example", "Bcc: evil@evil.example"),
    ("Ada " * 50, ("Ada " * 50).strip()),
    ("한" * 200, "한" * 200),
    ("Lovelace, Ada " * 14, ("Lovelace, Ada " * 14).strip()),
    ("Ada " * 400, ("Ada " * 400).strip()),  # longer than the store holds: channels only
]

# (subject, the subject a client must read back; None: the message is refused).
SUBJECTS: list[tuple[str, str | None]] = [
    ("Renewal for " + ACME_BCC, None),
    ("Renewal for " + EVE, None),
    ("Hello\x00World", None),
    ("Hello\rBcc: evil@evil.example", None),
    ("Hello\nBcc: evil@evil.example", None),
    ("Hello\u2028World", None),
    ("Hello\x85World", None),
    ("Hello\tWorld", None),
    ("Re: =?utf-8?q?Kim?= said =? twice", "Re: =?utf-8?q?Kim?= said =? twice"),
    ("Bcc: evil@evil.example", "Bcc: evil@evil.example"),
    (
        'Quotes "and" <angles>; semicolons, commas (and comments)',
        'Quotes "and" <angles>; semicolons, commas (and comments)',
    ),
    ("x" * 300, "x" * 300),
    (" ".join(["Your renewal is coming up"] * 12), " ".join(["Your renewal is coming up"] * 12)),
    ("안녕하세요, Acme 팀 — 갱신 안내 🎉 " * 8 + "끝", "안녕하세요, Acme 팀 — 갱신 안내 🎉 " * 8 + "끝"),
]

MIME_HEADERS = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "X-Touchflow-Send-Key",
    "X-Touchflow-Playbook",
    "X-Touchflow-Step",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "MIME-Version",
    "Content-Type",
]


def outgoing(
    send_key: str, to_name: str = "Kim", sender_name: str = "Team", subject: str = "Hello", link: str = LINK
) -> OutgoingEmail:
    rendered = RenderedEmail(subject, "<p>Hi</p>", "Hi\n", "en", "hello.en.html")
    return OutgoingEmail(
        send_key, sender_name, "team@touchflow.example", to_name, "kim@acme.example", rendered, "pb", "s", NOW,
        unsubscribe_url=link,
    )  # fmt: skip


@dataclass
class Received:
    """One message as its recipient's client sees it."""

    sender: tuple[str, str]
    to: tuple[str, str]
    subject: str
    unsubscribe: str
    text: str


# -- the three channels ------------------------------------------------------------------------------


class Sink:
    """An aiosmtpd handler keeping the raw DATA of every message."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 Message accepted"


@pytest.fixture(scope="module")
def smtp_sink() -> Iterator[tuple[Sink, int]]:
    sink, port = Sink(), _free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield sink, port
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def fake_sendgrid() -> Iterator[FakeSendGrid]:
    with FakeSendGrid() as server:
        yield server


def read_mime(raw: bytes) -> Received:
    """Parses `raw` as a mail client does; the header block holds exactly the headers written."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0]
    assert re.fullmatch(rb"[ -~\r\n]*", head), "a header byte is not printable ASCII"
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    assert list(message.keys()) == MIME_HEADERS
    assert message.defects == [] and all(message[name].defects == () for name in MIME_HEADERS)
    for name in MIME_HEADERS:
        assert not CONTROL.search(str(message[name])), f"{name} holds a control character"
    body = message.get_body(("plain",))
    assert body is not None
    return Received(
        read_address(raw, message, "From"),
        read_address(raw, message, "To"),
        str(message["Subject"]),
        unfolded(raw, "List-Unsubscribe"),
        body.get_content(),
    )


def read_address(raw: bytes, message: EmailMessage, name: str) -> tuple[str, str]:
    """(display name, address) of a one-address header, as mail clients read it. A name in encoded
    words is decoded the RFC 2047 way (the space between adjacent encoded words dropped), which
    Python's address parser does not do; the address itself comes from that parser."""
    (address,) = message[name].addresses
    value = unfolded(raw, name)
    if "=?" not in value:
        return address.display_name, address.addr_spec
    decoded = str(make_header(decode_header(value)))
    assert decoded.endswith(f" <{address.addr_spec}>")
    return decoded.removesuffix(f" <{address.addr_spec}>"), address.addr_spec


def unfolded(raw: bytes, name: str) -> str:
    """The header's value as RFC 5322 unfolding gives it (CRLF before whitespace removed), undecoded."""
    head = re.split(rb"\r?\n\r?\n", raw, maxsplit=1)[0].decode("ascii")
    found = re.search(rf"^{name}:([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", head, re.M | re.I)
    assert found is not None, f"no {name} header"
    return re.sub(r"\r?\n", "", found.group(1)).strip(" \t")


def via_outbox(tmp_path: Path, message: OutgoingEmail) -> Received:
    OutboxChannel(tmp_path).send(message)
    return read_mime((tmp_path / f"{message.send_key}.eml").read_bytes())


def via_smtp(sink: Sink, port: int, message: OutgoingEmail) -> Received:
    SmtpChannel("127.0.0.1", port, 5, starttls=False).send(message)
    return read_mime(sink.messages[-1])


def via_sendgrid(fake: FakeSendGrid, message: OutgoingEmail) -> Received:
    message_id = SendGridChannel("SG.test-key", fake.url, 5).send(message)
    (accepted,) = [m for m in fake.accepted if m.message_id == message_id]
    body = accepted.body
    for where, text in json_header_strings(body):
        assert not CONTROL.search(text), f"{where} holds a control character"
    (personalization,) = body["personalizations"]
    (to,) = personalization["to"]
    assert set(body["headers"]) == {"List-Unsubscribe", "List-Unsubscribe-Post"}
    return Received(
        (body["from"].get("name", ""), body["from"]["email"]),
        (to.get("name", ""), to["email"]),
        body["subject"],
        body["headers"]["List-Unsubscribe"],
        body["content"][0]["value"],
    )


def json_header_strings(body: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """Every string of the body that becomes (part of) a header."""
    yield "subject", body["subject"]
    yield "from.name", body["from"].get("name", "")
    for i, p in enumerate(body["personalizations"]):
        for j, to in enumerate(p["to"]):
            yield f"personalizations.{i}.to.{j}.name", to.get("name", "")
        for key, value in p.get("custom_args", {}).items():
            yield f"personalizations.{i}.custom_args.{key}", value
    for key, value in body.get("headers", {}).items():
        yield f"headers.{key}", key + value


Channel = Callable[[OutgoingEmail], Received]


@pytest.fixture(params=["outbox", "smtp", "sendgrid"])
def send(
    request: pytest.FixtureRequest, tmp_path: Path, smtp_sink: tuple[Sink, int], fake_sendgrid: FakeSendGrid
) -> Channel:
    """Sends one message through the channel and returns it as the recipient reads it."""
    if request.param == "outbox":
        return lambda message: via_outbox(tmp_path, message)
    if request.param == "smtp":
        return lambda message: via_smtp(*smtp_sink, message)
    return lambda message: via_sendgrid(fake_sendgrid, message)


# -- the corpus, channel by channel ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), NAMES, ids=[f"name{i}" for i in range(len(NAMES))])
def test_hostile_names_in_from_and_to(send: Channel, name: str, expected: str | None) -> None:
    key = f"name-{NAMES.index((name, expected))}"
    if expected is None:
        with pytest.raises(HeaderError, match=r"^From name: .*decode into text that contains the control"):
            outgoing(key, to_name="Kim", sender_name=name)
        with pytest.raises(HeaderError, match=r"^To name: .*decode into text that contains the control"):
            outgoing(key, to_name=name)
        return
    received = send(outgoing(key, to_name=name, sender_name=name))
    assert received.sender == (expected, "team@touchflow.example")
    assert received.to == (expected, "kim@acme.example")
    assert received.subject == "Hello" and received.unsubscribe == f"<{LINK}>"
    assert received.text.strip() == "Hi"


@pytest.mark.parametrize(("subject", "expected"), SUBJECTS, ids=[f"subject{i}" for i in range(len(SUBJECTS))])
def test_hostile_subjects(send: Channel, subject: str, expected: str | None) -> None:
    key = f"subject-{SUBJECTS.index((subject, expected))}"
    if expected is None:
        with pytest.raises(HeaderError, match=r"^Subject: .*control character U\+"):
            outgoing(key, subject=subject)
        return
    received = send(outgoing(key, subject=subject))
    assert received.subject == expected
    assert received.to == ("Kim", "kim@acme.example") and received.unsubscribe == f"<{LINK}>"


@pytest.mark.parametrize("link", [LINK, LONG_LINK], ids=["short", "long"])
def test_list_unsubscribe_is_a_literal_link(send: Channel, link: str) -> None:
    assert len(LONG_LINK) > 78
    received = send(outgoing(f"link-{len(link)}", link=link))
    assert received.unsubscribe == f"<{link}>"  # unfolded: exactly the link, no encoded word


@pytest.mark.parametrize("link", [LINK, LONG_LINK], ids=["short", "long"])
def test_list_unsubscribe_raw_line_holds_the_link(tmp_path: Path, link: str) -> None:
    OutboxChannel(tmp_path).send(outgoing("raw", link=link))
    raw = (tmp_path / "raw.eml").read_bytes().decode("ascii")
    lines = raw.split("\n\n", 1)[0].split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("List-Unsubscribe:"))
    field = [lines[start], *[line for line in lines[start + 1 :] if line[:1] in (" ", "\t")][:1]]
    assert any(f"<{link}>" in line for line in field)  # literally, on one line a client reads
    assert "=?" not in "".join(field)
    assert all(len(line) <= 78 for line in field if f"<{link}>" not in line)


@pytest.mark.parametrize(
    "link",
    ["https://app.touchflow.example/u?k=a b", "https://app.touchflow.example/u?k=a>\r\nBcc: x@evil.example",
     "https://app.touchflow.example/ü", "https://app.touchflow.example/" + "a" * 1000],
)  # fmt: skip
def test_a_link_that_cannot_be_written_literally_is_refused(link: str) -> None:
    with pytest.raises(HeaderError, match=r"^List-Unsubscribe: the link"):
        outgoing("bad-link", link=link)


def test_a_non_ascii_address_fails_the_mime_message_with_the_reason(tmp_path: Path) -> None:
    rendered = RenderedEmail("Hello", "<p>Hi</p>", "Hi\n", "en", "hello.en.html")
    message = OutgoingEmail("k", "Team", "team@touchflow.example", "Kim", "kim@bücher.example", rendered, "p", "s", NOW)
    with pytest.raises(HeaderError, match=r"^To: the address 'kim@bücher.example' is not ASCII"):
        OutboxChannel(tmp_path).send(message)
    assert list(tmp_path.glob("*.eml")) == []


def test_the_round_trip_check_catches_a_header_written_wrong(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last line of defence: were the writer to put data in unencoded, the message read back
    differs from the one intended and is refused instead of sent."""
    monkeypatch.setattr(headers, "_encoded_words", lambda text: [text])
    message = outgoing("unencoded", to_name="=?utf-8?q?Mallory?=")
    with pytest.raises(HeaderError, match=r"^To: reads back as \[\('Mallory', 'kim@acme.example'\)\]"):
        OutboxChannel(tmp_path).send(message)
    assert list(tmp_path.glob("*.eml")) == []


# -- through the real dispatch path: a ledger row → deliver → the audit ------------------------------

PLAYBOOK = """
id: hello
name: Hello
trigger: {date: contract_start, offset: 1d}
steps:
  - email: {to: {role: [admin]}, template: hello}
"""
TEMPLATE = """{% extends "_layout.html" %}{% block subject %}Hello {{ account.name }}{% endblock %}
{% block content %}<p>Hi {{ contact.name }}</p>{% endblock %}"""


def test_the_corpus_through_a_tick_one_bad_row_costs_that_row(db: Engine, db_url: str, tmp_path: Path) -> None:
    store = Store(db, NOW)
    started = (NOW - timedelta(days=1)).date()
    people = {}
    for name, expected in NAMES:
        if len(name) > 200 or ("\x00" in name and db.dialect.name == "postgresql"):
            continue  # the store cannot hold it (200 characters; no NUL in PostgreSQL text)
        account = store.account(name="Acme Analytics", contract_start=started)
        people[store.contact(account, "admin", name=name)] = expected
    bcc_account = store.account(name="Acme=?utf-8?q?=0D=0ABcc:_evil@evil.example?=", contract_start=started)
    bcc_contact = store.contact(bcc_account, "admin", name="Kim")
    proj = project(tmp_path, db_url, playbooks={"hello": PLAYBOOK}, templates={"hello.en.html": TEMPLATE})
    channel = OutboxChannel(proj.settings.outbox_dir)

    summary = tick.run_stages(db, proj, ["hello"], NOW, "run", channel)["hello"]

    refused = {cid for cid, expected in people.items() if expected is None} | {bcc_contact}
    assert summary.emails == len(people) + 1 - len(refused)
    with db.connect() as conn:
        rows = {r.contact_id: r for r in conn.execute(select(ledger))}
        audits = {
            r.contact_id: r for r in conn.execute(select(audit_log).where(audit_log.c.decision.in_(["sent", "failed"])))
        }
    assert {cid for cid, r in rows.items() if r.status == "failed"} == refused
    for cid in refused:
        assert (audits[cid].decision, audits[cid].reason) == ("failed", "render_failed")
        where = "Subject" if cid == bcc_contact else "To name"
        assert audits[cid].detail.startswith(f"{where}: ")
        assert "decode into text that contains the control character U+00" in audits[cid].detail
        assert rows[cid].error == audits[cid].detail
    for path in channel.directory.glob("*.eml"):
        received = read_mime(path.read_bytes())
        cid = next(c for c, r in rows.items() if r.send_key == path.stem)
        assert received.to[0] == people[cid]
        assert received.subject == "Hello Acme Analytics"


def test_a_message_the_round_trip_refuses_fails_alone_in_its_batch(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(db, NOW)
    started = (NOW - timedelta(days=1)).date()
    plain = store.contact(store.account(contract_start=started), "admin", name="Kim Lee")
    odd = store.contact(store.account(contract_start=started), "admin", name="=?utf-8?q?Mallory?=")
    proj = project(tmp_path, db_url, playbooks={"hello": PLAYBOOK}, templates={"hello.en.html": TEMPLATE})
    monkeypatch.setattr(headers, "_encoded_words", lambda text: [text])  # a writer gone wrong

    tick.run_stages(db, proj, ["hello"], NOW, "run", OutboxChannel(proj.settings.outbox_dir))

    with db.connect() as conn:
        status = {r.contact_id: r.status for r in conn.execute(select(ledger))}
        (failed,) = conn.execute(select(audit_log).where(audit_log.c.decision == "failed")).all()
    assert status == {plain: "sent", odd: "failed"}
    assert (failed.contact_id, failed.reason) == (odd, "channel_error")
    assert "To: reads back as [('Mallory', " in failed.detail


@pytest.mark.parametrize(
    ("address", "shown"),
    [
        ("ki\x00m@acme.example", "'ki\\u0000m@acme.example' is not a valid address: "),
        (
            "kim@acme.example\r\nBcc: evil@evil.example",
            "'kim@acme.example\\u000d\\u000aBcc: evil@evil.example' is not an",
        ),
        ("kim\u2028@acme.example", "'kim\\u2028@acme.example' is not an email address"),
        ('"k\x01m"@acme.example', "'\"k\\u0001m\"@acme.example' is not a valid address: "),
    ],
)
def test_an_address_problem_names_its_control_characters_without_writing_them(address: str, shown: str) -> None:
    problem = email_problem(address)
    assert problem is not None and problem.startswith(shown)
    assert not CONTROL.search(problem)
    assert email_problem("kim@acme.example") is None and email_problem("o'brien+tag@mail.acme.example") is None


def test_the_sendgrid_body_is_checked_as_it_goes_out(fake_sendgrid: FakeSendGrid) -> None:
    """A string no header check saw (here the arm, a custom arg) still cannot carry a control
    character to SendGrid: the body is refused before any request."""
    message = replace(outgoing("arm"), variant="b\r\nX-Injected: yes")
    before = len(fake_sendgrid.requests)
    with pytest.raises(HeaderError, match=r"^SendGrid body personalizations\.0\.custom_args\.variant: 'b\\u000d"):
        SendGridChannel("SG.test-key", fake_sendgrid.url, 5).send(message)
    assert len(fake_sendgrid.requests) == before
