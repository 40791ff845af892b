"""The console's defences over HTTP: CSRF, session fixation, the sign-in throttle, sign-out, the
security headers, open redirects and query parameters that must never come back unescaped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from starlette.testclient import TestClient

from engine.console.auth import CSRF_COOKIE, SESSION_COOKIE
from engine.console.users import disable_user
from tests.console.conftest import PASSWORD, ConsoleEnv, csrf_of, email_of, sign_in


def test_a_post_without_the_sessions_csrf_token_is_refused(console_env: ConsoleEnv, client: TestClient) -> None:
    sign_in(client, "admin")
    form = {"step": "thanks", "arm": "celebrate", "locale": "en", "contact": "1"}
    for token in (None, "", "forged-token"):
        data = form if token is None else {**form, "csrf": token}
        response = client.post("/playbooks/anniversary/review/send", data=data)
        assert response.status_code == 403 and "CSRF" in response.text
    assert list(console_env.settings.outbox_dir.glob("*.eml")) == []


def test_sign_in_needs_the_forms_token_and_its_cookie(console_env: ConsoleEnv, client: TestClient) -> None:
    page = client.get("/login")
    token = csrf_of(page.text)
    client.cookies.delete(CSRF_COOKIE)
    response = client.post("/login", data={"email": email_of("admin"), "password": PASSWORD, "csrf": token})
    assert response.status_code == 403 and SESSION_COOKIE not in client.cookies


def test_signing_in_issues_a_new_session_and_ends_the_one_the_browser_brought(
    console_env: ConsoleEnv, client: TestClient
) -> None:
    # An attacker's planted cookie is never adopted.
    client.cookies.set(SESSION_COOKIE, "planted-by-attacker", domain="testserver.local")
    assert sign_in(client, "viewer").status_code == 303  # type: ignore[attr-defined]
    first = client.cookies.get(SESSION_COOKIE)
    assert first and first != "planted-by-attacker"
    # Signing in again (say, as someone else on a shared machine) replaces the session.
    assert sign_in(client, "marketer").status_code == 303  # type: ignore[attr-defined]
    second = client.cookies.get(SESSION_COOKIE)
    assert second != first
    with TestClient(console_env.app) as other:
        other.cookies.set(SESSION_COOKIE, first)
        assert other.get("/playbooks", follow_redirects=False).status_code == 303
        other.cookies.set(SESSION_COOKIE, second)
        assert other.get("/playbooks", follow_redirects=False).status_code == 200


def test_the_session_cookie_is_httponly_samesite_and_expires(console_env: ConsoleEnv, client: TestClient) -> None:
    response = sign_in(client, "viewer")
    cookie = response.headers["set-cookie"].lower()  # type: ignore[attr-defined]
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=43200" in cookie
    console_env.now[0] += timedelta(hours=12, seconds=1)
    assert client.get("/playbooks", follow_redirects=False).status_code == 303


def test_sign_out_and_disabling_end_the_session(console_env: ConsoleEnv, client: TestClient) -> None:
    sign_in(client, "viewer")
    token = client.cookies.get(SESSION_COOKIE)
    page = client.get("/playbooks").text
    assert client.post("/logout", data={"csrf": csrf_of(page)}, follow_redirects=False).status_code == 303
    with TestClient(console_env.app) as replay:
        replay.cookies.set(SESSION_COOKIE, token or "")
        assert replay.get("/playbooks", follow_redirects=False).status_code == 303
    sign_in(client, "marketer")
    with console_env.engine.begin() as conn:
        disable_user(conn, email_of("marketer"), console_env.now[0])
    assert client.get("/playbooks", follow_redirects=False).status_code == 303
    assert sign_in(client, "marketer").status_code == 401  # type: ignore[attr-defined]


def test_failed_sign_ins_slow_the_next_ones_down(console_env: ConsoleEnv, client: TestClient) -> None:
    for _ in range(3):
        assert sign_in(client, "admin", "wrong password!").status_code == 401  # type: ignore[attr-defined]
    waits = []
    for _ in range(2):
        refused = sign_in(client, "admin")  # even the right password waits
        assert refused.status_code == 429  # type: ignore[attr-defined]
        waits.append(int(refused.headers["retry-after"]))  # type: ignore[attr-defined]
        console_env.now[0] += timedelta(seconds=waits[-1])
        assert sign_in(client, "admin", "wrong password!").status_code == 401  # type: ignore[attr-defined]
    assert waits == [2, 4]  # the delay doubles with each failure
    console_env.now[0] += timedelta(seconds=8)
    assert sign_in(client, "admin").status_code == 303  # type: ignore[attr-defined]


def test_many_failures_from_one_client_slow_down_every_address(console_env: ConsoleEnv, client: TestClient) -> None:
    for n in range(20):  # the 20 failures a client may make without delay
        response = client.post(
            "/login",
            data={"email": f"nobody{n}@x.example", "password": "guess", "csrf": csrf_of(client.get("/login").text)},
        )
        assert response.status_code == 401
    assert sign_in(client, "viewer").status_code == 429  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "path",
    ["/login", "/playbooks", "/playbooks/anniversary", "/playbooks/anniversary/review", "/playbooks/no-such"],
)
def test_no_page_reflects_a_query_parameter_unescaped(console_env: ConsoleEnv, client: TestClient, path: str) -> None:
    if path != "/login":
        sign_in(client, "admin")
    probe = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
    query = {"next": probe, "version": probe, "width": probe, "q": probe}
    response = client.get(path, params=query)
    assert "<script>alert(1)" not in response.text and "<img src=x onerror" not in response.text
    assert "script-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_next_never_leaves_the_site(console_env: ConsoleEnv, client: TestClient) -> None:
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        page = client.get("/login", params={"next": target})
        response = client.post(
            "/login",
            params={"next": target},
            data={"email": email_of("viewer"), "password": PASSWORD, "csrf": csrf_of(page.text)},
            follow_redirects=False,
        )
        assert response.headers["location"] == "/playbooks"
