"""The console served for Chromium: uvicorn on a free loopback port, in a thread of the test.

Every request's arrival and answer goes to stderr with its duration, which pytest shows for a
failed test: a browser step that timed out then reads as "arrived, never answered" (the server
was slow or stuck) or as "never arrived" (the browser did not send it), two different bugs.
"""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class _Timed:
    """An ASGI wrapper writing `→ METHOD /path` on arrival and `← status in N s` on the answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        what = f"{scope['method']} {scope['path']}"
        start = time.monotonic()
        status: list[Any] = []
        _log(f"→ {what}")

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            said = status[0] if status else "no answer"
            _log(f"← {what} {said} in {time.monotonic() - start:.2f} s")


def _log(line: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} console {line}", file=sys.stderr, flush=True)


@contextmanager
def served(app: ASGIApp) -> Iterator[str]:
    """Serve `app` on a free loopback port until the block ends; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = uvicorn.Config(_Timed(app), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive(), "the console's server stopped before it started (see stderr)"
        assert time.monotonic() < deadline, "the console did not start in 20 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
