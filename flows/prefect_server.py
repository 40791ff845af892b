"""The Prefect API server of `touchflow run`: a child process that dies with the command.

Prefect's ephemeral mode starts its server with a plain `subprocess.Popen`: a `touchflow run`
killed with SIGKILL (an OOM kill, a CI timeout, `kill -9`) runs no cleanup and leaves that
server running for ever. So the command starts the same server itself, as a child that asks the
kernel to kill it when its parent dies (`PR_SET_PDEATHSIG` on Linux; a watchdog thread polling
the parent elsewhere), and points `PREFECT_API_URL` at it: Prefect then never starts its own.

Run as `python -m flows.prefect_server --parent PID --port N` this module is that child.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_ATTEMPTS = 3  # a port can be taken between choosing it and the child binding it


class ServerStartError(RuntimeError):
    """The Prefect API server did not come up."""


@dataclass
class ApiServer:
    """A running Prefect API server child and its address."""

    process: subprocess.Popen[bytes]
    api_url: str

    def stop(self) -> None:
        """Terminate the child (then kill it if it lingers) and reap it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def prefect_api_configured() -> bool:
    """Whether Prefect already has an API to talk to (environment or profile): then none is started."""
    from prefect.settings import get_current_settings

    return bool(get_current_settings().api.url)


def start_api_server(timeout: float | None = None) -> ApiServer:
    """Start the Prefect API server child, wait until it answers, and make this process use it.

    Sets `PREFECT_API_URL` (and refreshes Prefect's global settings, which read the environment
    once) so every client of this process, in any thread, talks to this server. The child is
    stopped at exit, and killed by the kernel if this process dies without exiting.
    Raises ServerStartError when it does not answer within `timeout` seconds (default:
    PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, else 120).

    Call it from the main thread: Linux delivers the parent-death signal when the *thread*
    that started the child ends, not only the process.
    """
    limit = timeout or float(os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 120)
    last = ""
    for _ in range(_ATTEMPTS):
        port = _free_port()
        server = ApiServer(_spawn(port), f"http://127.0.0.1:{port}/api")
        atexit.register(server.stop)
        outcome = _wait_healthy(server.process, server.api_url, limit)
        if outcome is None:
            os.environ["PREFECT_API_URL"] = server.api_url
            from prefect.context import refresh_global_settings_context

            refresh_global_settings_context()
            return server
        last = outcome
        server.stop()
    raise ServerStartError(f"the Prefect API server did not start: {last}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(port: int) -> subprocess.Popen[bytes]:
    # The variables Prefect's own ephemeral server runs with: no UI, ephemeral services.
    env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
    env.pop("PREFECT_API_URL", None)
    command = [sys.executable, "-m", "flows.prefect_server", "--parent", str(os.getpid()), "--port", str(port)]
    return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)


def _wait_healthy(process: subprocess.Popen[bytes], api_url: str, limit: float) -> str | None:
    """None once `/health` answers 200; else why not (the child exited, or the time ran out)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"it exited with code {process.returncode}"
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return None
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    return f"no answer from {api_url} within {limit:.0f} s"


def _die_with(parent: int) -> None:
    """Make the kernel SIGKILL this process when `parent` dies; exit now if it already has."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    # The parent may have died between our fork and the prctl above: then we were re-parented.
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:  # for systems without prctl; harmless on Linux
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def _serve(argv: list[str]) -> None:
    options = dict(zip(argv[::2], argv[1::2], strict=True))
    _die_with(int(options["--parent"]))
    import uvicorn

    uvicorn.run(
        "prefect.server.api.server:create_app",
        factory=True,
        host="127.0.0.1",
        port=int(options["--port"]),
        log_level="error",
        lifespan="on",
    )


if __name__ == "__main__":
    _serve(sys.argv[1:])
