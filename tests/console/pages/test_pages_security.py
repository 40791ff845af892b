"""The pages of the audit, timelines, approvals and experiments reflect no query parameter
unescaped, and answer with the console's security headers, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.testclient import TestClient

from tests.console.conftest import sign_in
from tests.console.pages.conftest import PagesEnv

PROBE = '"><script>alert(1)</script><img src=x onerror=alert(2)>'
PARAMS = ("playbook", "contact", "account", "reason", "decision", "since", "until", "after", "back", "size")


@pytest.mark.parametrize(
    "path", ["/audit", "/audit/csv", "/timeline", "/approvals", "/experiments", "/messages/x%22%3E%3Cscript%3E"]
)
def test_no_page_reflects_a_query_parameter_unescaped(make_env: Callable[..., PagesEnv], path: str) -> None:
    env = make_env()
    with TestClient(env.app, base_url="http://testserver") as client:
        assert sign_in(client, "admin").status_code == 303  # type: ignore[attr-defined]
        for name in (*PARAMS, "approved", "metric"):
            response = client.get(path, params={name: PROBE})
            assert response.status_code in (200, 400, 404), (name, response.status_code)
            assert "<script>alert(1)" not in response.text and "<img src=x onerror" not in response.text
            assert "script-src 'none'" in response.headers["content-security-policy"]
            assert response.headers["x-frame-options"] == "DENY"
            assert "Traceback" not in response.text


HUGE = "99999999999999999999"  # over PostgreSQL's bigint: must be refused before it reaches SQL


@pytest.mark.parametrize(
    ("path", "params", "status", "said"),
    [
        ("/audit", {"account": HUGE}, 400, "is not an account id"),
        ("/audit", {"contact": HUGE}, 400, "no contact"),
        ("/audit", {"after": f"2026-11-02T09:00:00~{HUGE}"}, 400, "is not a page cursor"),
        ("/audit/csv", {"account": HUGE}, 400, "is not an account id"),
        ("/timeline", {"contact": HUGE}, 404, "no contact"),
    ],
)
def test_a_number_no_store_holds_is_named_not_a_server_error(
    make_env: Callable[..., PagesEnv], path: str, params: dict[str, str], status: int, said: str
) -> None:
    env = make_env()
    with TestClient(env.app, base_url="http://testserver") as client:
        assert sign_in(client, "manager").status_code == 303  # type: ignore[attr-defined]
        response = client.get(path, params=params)
    assert response.status_code == status and said in response.text
