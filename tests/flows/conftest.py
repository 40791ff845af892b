"""The Prefect test harness, one per session for every test of the flows (it costs ~20 s to start)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A temporary Prefect API (SQLite) that this process's flows and clients use."""
    os.environ.setdefault("PREFECT_HOME", str(tmp_path_factory.mktemp("prefect-home")))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def pytest_configure(config: pytest.Config) -> None:
    """The marker of the deployed-stack test (run by `make test`; `-m "not slow"` skips it)."""
    config.addinivalue_line("markers", "slow: starts a Prefect server, deploys and runs workers (about a minute)")
