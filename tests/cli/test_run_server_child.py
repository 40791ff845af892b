"""`touchflow run` starts a Prefect API server as a child process; killing the command with
SIGKILL (no atexit, no cleanup code) must not leave that server running."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
TOUCHFLOW = Path(sys.executable).parent / "touchflow"

pytestmark = [
    pytest.mark.prefect,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc"),
]


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of a process, or None when it no longer exists."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    """Running, sleeping, stopped…: anything but gone or a zombie waiting to be reaped."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[1] == pid:
                found.append(int(entry.name))
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _wait(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


@pytest.fixture
def demo_project(tmp_path: Path) -> dict[str, str]:
    """A copy of the repo's project over a 50-account SQLite demo store; the environment to run in."""
    root = tmp_path / "proj"
    for part in ("playbooks", "templates"):
        shutil.copytree(REPO / part, root / part)
    shutil.copy(REPO / "touchflow.yaml", root / "touchflow.yaml")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TOUCHFLOW_", "PREFECT_"))},
        "TOUCHFLOW_PROJECT_DIR": str(root),
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
    }
    subprocess.run(
        [str(TOUCHFLOW), "demo-data", "--accounts", "50", "--now", "2026-11-24T09:00"],
        cwd=root,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    return env


def test_the_prefect_server_dies_with_a_killed_run(demo_project: dict[str, str]) -> None:
    run = subprocess.Popen(
        [str(TOUCHFLOW), "run", "--now", "2026-11-24T09:00"],
        cwd=demo_project["TOUCHFLOW_PROJECT_DIR"],
        env=demo_project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    servers: list[int] = []
    try:
        # The server child: a process of the run whose command line is a Prefect server.
        def server_started() -> bool:
            servers[:] = [c for c in _children(run.pid) if "prefect" in _cmdline(c) and _alive(c)]
            return bool(servers)

        assert _wait(server_started, 180), "touchflow run started no Prefect server child"
        time.sleep(1.5)  # let it get past start-up into serving
        assert run.poll() is None, "the run ended before it could be killed"
        os.kill(run.pid, signal.SIGKILL)
        run.wait(timeout=10)
        assert _wait(lambda: not any(_alive(pid) for pid in servers), 5), [
            f"{pid} {_stat(pid)} {_cmdline(pid)}" for pid in servers if _alive(pid)
        ]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        for pid in servers:  # only on failure: the leftover this test is about
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_a_server_that_does_not_answer_in_time_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.prefect_server import ServerStartError, start_api_server

    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    with pytest.raises(ServerStartError, match=re.escape("did not start: no answer from http://127.0.0.1:")):
        start_api_server(timeout=0.05)
    leftovers = [pid for pid in _children(os.getpid()) if "flows.prefect_server" in _cmdline(pid) and _alive(pid)]
    assert leftovers == []
    assert "PREFECT_API_URL" not in os.environ
