"""`touchflow users`: add (password from standard input), list, disable, set-password, against a
real store; bad input is one line saying what is wrong."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.console.users import authenticate
from engine.store.db import connect


@pytest.fixture
def store(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TOUCHFLOW_DATABASE_URL", db_url)
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(tmp_path))
    yield db_url


def _users(*args: str, password: str = "") -> tuple[int, str]:
    result = CliRunner().invoke(app, ["users", *args], input=password)
    return result.exit_code, result.output


def test_users_are_added_listed_disabled_and_given_new_passwords(store: str) -> None:
    assert _users("add", "Ann@Example.com", "--role", "marketer", password="a long passphrase here\n") == (
        0,
        "added ann@example.com (marketer)\n",
    )
    assert _users("add", "bob@example.com", password="another long passphrase\n")[0] == 0
    code, listing = _users("list")
    assert code == 0 and listing.splitlines() == [
        "ann@example.com\tmarketer\tactive",
        "bob@example.com\tviewer\tactive",
    ]
    engine = connect(store)
    try:
        with engine.begin() as conn:
            assert authenticate(conn, "ann@example.com", "a long passphrase here") is not None
        assert _users("set-password", "ann@example.com", password="a brand new passphrase\n")[0] == 0
        with engine.begin() as conn:
            assert authenticate(conn, "ann@example.com", "a long passphrase here") is None
            assert authenticate(conn, "ann@example.com", "a brand new passphrase") is not None
        assert _users("disable", "ann@example.com")[0] == 0
        with engine.begin() as conn:
            assert authenticate(conn, "ann@example.com", "a brand new passphrase") is None
    finally:
        engine.dispose()
    assert "disabled" in _users("list")[1].splitlines()[0]


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (("add", "x@example.com", "--role", "owner"), "a long passphrase here\n", "unknown role 'owner'"),
        (("add", "not-an-address", "--role", "viewer"), "a long passphrase here\n", "is not an email address"),
        (("add", "x@example.com"), "short\n", "at least 12 characters"),
        (("disable", "nobody@example.com"), "", "no user 'nobody@example.com'"),
    ],
)
def test_bad_input_is_named_in_one_line(store: str, args: tuple[str, ...], password: str, message: str) -> None:
    code, output = _users(*args, password=password)
    assert code == 1 and message in output and "Traceback" not in output


def test_a_second_user_with_the_same_address_is_refused(store: str) -> None:
    assert _users("add", "ann@example.com", password="a long passphrase here\n")[0] == 0
    code, output = _users("add", "ANN@example.com", password="a long passphrase here\n")
    assert code == 1 and "exists already" in output
    assert os.environ["TOUCHFLOW_DATABASE_URL"] == store
