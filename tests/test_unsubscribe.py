"""Signed unsubscribe links: the token, the key file, the pages, and what a click does."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import Engine, func, insert, select
from starlette.testclient import TestClient

from engine.store.models import audit_log, ledger, suppressions
from engine.unsubscribe import KEY_FILE, SECRET_ENV, UnsubscribeLinks, load_links
from engine.webhooks.app import create_app
from tests.factories import Store

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
LINKS = UnsubscribeLinks("https://cs.example.com", b"s3cret")


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def test_a_token_signs_one_send_key_under_one_secret() -> None:
    link = query(LINKS.url("k-1"))
    assert link["k"] == "k-1" and LINKS.valid("k-1", link["t"])
    assert not LINKS.valid("k-2", link["t"])  # another message's key
    assert not LINKS.valid("k-1", link["t"][:-1] + ("A" if link["t"][-1] != "A" else "B"))  # tampered
    assert not UnsubscribeLinks("https://cs.example.com", b"other").valid("k-1", link["t"])  # other secret
    assert not LINKS.valid("", LINKS.token(""))
    assert "s3cret" not in repr(LINKS)


def test_the_secret_comes_from_the_environment_else_one_key_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    first = [load_links(tmp_path) for _ in range(4)]
    assert len({links.secret for links in first}) == 1
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert load_links(tmp_path).secret == b"from-env"


def test_processes_creating_the_key_file_at_once_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    seen: list[bytes] = []
    threads = [threading.Thread(target=lambda: seen.append(load_links(tmp_path).secret)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(seen) == 8
    assert [p.name for p in (tmp_path / KEY_FILE).parent.iterdir()] == [KEY_FILE.name]


def add_message(db: Engine, send_key: str, email: str) -> int:
    """A message sent to `email` (recorded on its ledger row, as dispatch does)."""
    store = Store(db, NOW.replace(tzinfo=None))
    contact = store.contact(store.account(), email=email)
    with db.begin() as conn:
        conn.execute(
            insert(ledger),
            [
                {
                    "send_key": send_key,
                    "kind": "email",
                    "channel": "sendgrid",
                    "status": "sent",
                    "playbook_id": "onboarding",
                    "playbook_version": "v1",
                    "step_id": "welcome",
                    "enrollment_id": 1,
                    "account_id": 1,
                    "contact_id": contact,
                    "payload": {},
                    "sent_to": email,
                    "created_at": NOW.replace(tzinfo=None),
                    "updated_at": NOW.replace(tzinfo=None),
                }
            ],
        )
    return contact


def suppressed(db: Engine) -> list[tuple[str, str, str]]:
    with db.connect() as conn:
        return [
            tuple(r) for r in conn.execute(select(suppressions.c.email, suppressions.c.reason, suppressions.c.source))
        ]


def test_get_asks_post_unsubscribes_once_with_an_audit_row(db: Engine) -> None:
    add_message(db, "key-1", "Kim@Example.com")
    url = LINKS.url("key-1").removeprefix(LINKS.base_url)
    with TestClient(create_app(db, None, clock=lambda: NOW, links=LINKS)) as client:
        page = client.get(url)
        assert page.status_code == 200 and '<form method="post"' in page.text and "k***@example.com" in page.text
        assert suppressed(db) == []  # link scanners fetch URLs: a GET changes nothing
        done = client.post(url, data={"List-Unsubscribe": "One-Click"})
        assert done.status_code == 200 and "k***@example.com" in done.text  # masked: links get forwarded
        assert "kim@" not in done.text.lower()
        assert client.post(url).status_code == 200  # a second click is harmless
    assert suppressed(db) == [("kim@example.com", "unsubscribe", "unsubscribe_link")]
    with db.connect() as conn:
        rows = conn.execute(select(audit_log.c.reason, audit_log.c.send_key, audit_log.c.detail)).all()
    assert [(r.reason, r.send_key) for r in rows] == [("suppressed_unsubscribed", "key-1")]


def test_forged_or_unknown_links_change_nothing(db: Engine) -> None:
    add_message(db, "key-1", "kim@example.com")
    forged = f"/unsubscribe?k=key-1&t={LINKS.token('key-2')}"
    unknown = LINKS.url("key-404").removeprefix(LINKS.base_url)
    with TestClient(create_app(db, None, clock=lambda: NOW, links=LINKS)) as client:
        assert client.get(forged).status_code == 403
        assert client.post(forged).status_code == 403
        assert client.post("/unsubscribe?k=key-1").status_code == 403
        assert client.post(unknown).status_code == 404
        assert client.post("/webhooks/sendgrid", content=b"[]").status_code in (404, 405)  # no key, no webhook
    assert suppressed(db) == []
    with db.connect() as conn:
        assert conn.execute(select(func.count()).select_from(audit_log)).scalar_one() == 0


def test_a_token_that_is_not_ascii_is_refused_not_a_crash(db: Engine) -> None:
    assert not LINKS.valid("key-1", "é")
    with TestClient(create_app(db, None, clock=lambda: NOW, links=LINKS)) as client:
        assert client.get("/unsubscribe?k=key-1&t=%C3%A9").status_code == 403
        assert client.post("/unsubscribe?k=key-1&t=%C3%A9").status_code == 403


def test_the_confirmation_form_posts_to_a_relative_url(db: Engine) -> None:
    add_message(db, "key-1", "kim@example.com")
    url = LINKS.url("key-1").removeprefix(LINKS.base_url)
    with TestClient(create_app(db, None, clock=lambda: NOW, links=LINKS)) as client:
        page = client.get(url)
    query = url.split("?", 1)[1].replace("&", "&amp;")  # HTML-escaped in the attribute
    assert f'action="?{query}"' in page.text
