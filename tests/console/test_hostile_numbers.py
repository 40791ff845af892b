"""Numbers in query strings and forms, written by a hostile hand: every page answers with what is
wrong or ignores the value, never a 500 (`engine/console/params.py`); a NUL in any parameter is
refused before a page runs (`engine/console/app.py`)."""

from __future__ import annotations

import html

import pytest
from starlette.testclient import TestClient

from engine.console.params import BIGINT_MAX, whole_number
from tests.console.conftest import sign_in

HOSTILE = ["²", "٣", "1_0", "+3", "-1", "0x10", " 7 ", "9" * 5000, str(BIGINT_MAX + 1), "", "\x00"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("7", 7), (" 7 ", 7), (str(BIGINT_MAX), BIGINT_MAX), (str(BIGINT_MAX + 1), None), ("0", None),
     ("²", None), ("٣", None), ("1_0", None), ("+3", None), ("-1", None), ("9" * 5000, None), ("", None), (None, None)],
)  # fmt: skip
def test_whole_number_takes_ascii_digits_in_range_only(raw: str | None, expected: int | None) -> None:
    assert whole_number(raw) == expected


@pytest.mark.parametrize("value", HOSTILE)
@pytest.mark.parametrize(
    "path",
    ["/audit?account={}", "/audit?size={}", "/audit?contact={}", "/funnel?weeks={}", "/health?days={}",
     "/health?account={}", "/portfolio?csm={}"],
)  # fmt: skip
def test_no_page_fails_on_a_hostile_number(client: TestClient, path: str, value: str) -> None:
    assert sign_in(client, "admin").status_code == 303  # type: ignore[attr-defined]
    page = client.get(path.split("?")[0], params={path.split("?")[1].split("=")[0]: value})
    assert page.status_code in (200, 400, 404), (path, value, page.status_code)
    assert "Traceback" not in page.text and "Internal Server Error" not in page.text


@pytest.mark.parametrize("path", ["/audit?playbook={}", "/audit?contact={}", "/audit?reason={}", "/health?account={}"])
def test_a_nul_in_any_parameter_is_a_400_naming_it(client: TestClient, path: str) -> None:
    assert sign_in(client, "admin").status_code == 303  # type: ignore[attr-defined]
    name = path.split("?")[1].split("=")[0]
    page = client.get(path.split("?")[0], params={name: "a\x00b"})
    assert page.status_code == 400
    assert "contains a NUL character" in page.text and repr(name) in html.unescape(page.text)
