"""The fake SendGrid (`tests/fakes/sendgrid_server.py`) in a process of its own, answering every
mail send after a fixed latency, as a provider across a network does.

Pacing and throughput are measured in the sending process: the fake's own work (parsing and
validating each body against the OpenAPI document) must not compete with it for the interpreter
lock, or the measurement would be of the fake. The child prints its URL, serves until asked
for its report (the moment each accepted message arrived and its send keys), then exits.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Arrival:
    """One accepted mail send: when the fake received it (unix seconds) and its send keys."""

    at: float
    send_keys: tuple[str, ...]


class RemoteFake:
    """The parent's handle on the child: its URL and, at the end, what it accepted."""

    def __init__(self, process: subprocess.Popen[str], url: str) -> None:
        self.process, self.url = process, url

    def arrivals(self) -> list[Arrival]:
        """Every message accepted so far (the child keeps serving until the context exits)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("report\n")
        self.process.stdin.flush()
        rows = json.loads(self.process.stdout.readline())
        return [Arrival(float(at), tuple(keys)) for at, keys in rows]


def serve(latency: float) -> None:
    """The child: a FakeSendGrid answering after `latency` seconds; reports on each stdin line."""
    from tests.fakes.sendgrid_server import FakeSendGrid

    with FakeSendGrid() as fake:
        fake.set_fault_hook(lambda _n, _request: ("slow", latency))
        sys.stdout.write(fake.url + "\n")
        sys.stdout.flush()
        for _ in sys.stdin:
            rows = [[m.received_at, list(m.send_keys)] for m in fake.accepted]
            sys.stdout.write(json.dumps(rows) + "\n")
            sys.stdout.flush()


@contextmanager
def provider_process(latency: float = 0.05) -> Iterator[RemoteFake]:
    """Start the fake in a child process; yields its handle; stops it on exit."""
    code = f"from tests.fakes.provider_process import serve; serve({float(latency)!r})"
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        if not url.startswith("http://"):
            raise RuntimeError("the fake provider's process did not start")
        yield RemoteFake(process, url)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
