"""`touchflow bench dispatch`: the dispatch stage through the SendGrid channel, against the floor.

Both sides post to the same local mail-send server, at the same concurrency, in the same run:

* the floor — the bare `sendgrid` client (one per worker thread) posting the very bodies the
  engine sent (`mail_body`, kept as they went out): what sending costs with nothing around it;
* the engine — `claim_batch` + `deliver_batch` in batches of 500 with the `SendGridChannel`
  and `DispatchSettings(attempts=1, concurrency=C)`: loading the rows and their context, rendering,
  building each body, one client per message, and committing every outcome with its audit row.

The server (`_serve`) runs in its own process, so its work does not compete with the client
side for the interpreter lock: what is measured is the sending process. The store is a scratch
SQLite file in a temporary directory with `messages` planned email ledger rows, planned by the
engine itself (one-step playbook, a date trigger, admin + champion contacts).
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sendgrid import SendGridAPIClient
from sqlalchemy import Engine, func, select

from engine.config import Settings
from engine.dispatch.channels import OutgoingEmail
from engine.dispatch.sendgrid_channel import SendGridChannel, mail_body
from engine.dispatch.settings import DispatchSettings
from engine.project import Project, load_project
from engine.store.bulk import bulk_insert
from engine.store.db import connect, migrate
from engine.store.models import accounts, contacts, ledger
from engine.tick import DISPATCH_BATCH, claim_batch, deliver_batch, evaluate_and_advance

NOW = datetime(2026, 11, 23, 9, 0)
API_KEY = "SG.bench-dispatch"
PLAYBOOK_ID = "bench-dispatch"
PLAYBOOK = f"""
id: {PLAYBOOK_ID}
name: Dispatch benchmark
trigger: {{date: contract_start, offset: 1d}}
steps:
  - email: {{to: {{role: [admin, champion]}}, template: welcome/hello}}
"""
WARM_UP_BODY: dict[str, Any] = {
    "personalizations": [{"to": [{"email": "warm-up@example.com"}]}],
    "from": {"email": "success@touchflow.example"},
    "subject": "warm-up",
    "content": [{"type": "text/plain", "value": "warm-up"}],
}


@dataclass(frozen=True)
class DispatchBench:
    """The figures `bench dispatch` prints."""

    messages: int
    concurrency: int
    engine_s: float
    floor_s: float
    sent: int
    server_requests: int
    build_s: float

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.engine_s if self.engine_s else float("inf")

    @property
    def floor_msgs_per_s(self) -> float:
        return self.messages / self.floor_s if self.floor_s else float("inf")

    @property
    def ratio(self) -> float:
        """Engine throughput over the floor's: 1.0 means dispatch costs nothing beyond sending."""
        return self.msgs_per_s / self.floor_msgs_per_s if self.floor_msgs_per_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "msgs_per_s": round(self.msgs_per_s, 1),
            "floor_msgs_per_s": round(self.floor_msgs_per_s, 1),
            "ratio": round(self.ratio, 3),
            "messages": self.messages,
            "concurrency": self.concurrency,
            "engine_s": round(self.engine_s, 3),
            "floor_s": round(self.floor_s, 3),
            "sent": self.sent,
            "server_requests": self.server_requests,
            "build_s": round(self.build_s, 1),
        }


# --- the local mail-send server (its own process) ----------------------------------------------


class _MailHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BenchMail/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        server = self.server
        assert isinstance(server, _MailServer)
        with server.lock:
            server.requests += 1
            n = server.requests
        self.send_response(202)
        self.send_header("X-Message-Id", f"bench-{n}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:  # /count: requests answered so far and the server's CPU time
        server = self.server
        assert isinstance(server, _MailServer)
        with server.lock:
            answered = server.requests
        data = json.dumps({"requests": answered, "cpu_s": time.process_time()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _MailServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _MailHandler)
        self.lock = threading.Lock()
        self.requests = 0


def serve() -> None:
    """The server process: write the port on stdout, serve until terminated."""
    server = _MailServer()
    sys.stdout.write(f"{server.server_address[1]}\n")
    sys.stdout.flush()
    server.serve_forever(poll_interval=0.5)


@contextmanager
def mail_server() -> Iterator[str]:
    """A local `POST /v3/mail/send` answering 202 + X-Message-Id, in a child process; yields its URL."""
    code = "from benchmarks.dispatch import serve; serve()"
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        if not line.isdigit():
            raise RuntimeError("the benchmark's mail server did not start")
        yield f"http://127.0.0.1:{line}"
    finally:
        process.terminate()
        process.wait(10)


def server_stats(url: str) -> dict[str, Any]:
    """Requests the server answered so far, and its CPU seconds."""
    import urllib.request

    with urllib.request.urlopen(f"{url}/count", timeout=10) as response:
        return dict(json.loads(response.read()))


# --- the store --------------------------------------------------------------------------------


def write_project(root: Path, database_url: str, templates_dir: Path) -> Project:
    """A project with one one-step email playbook, rendering the real project's templates."""
    (root / "playbooks").mkdir(parents=True, exist_ok=True)
    (root / "playbooks" / f"{PLAYBOOK_ID}.yaml").write_text(PLAYBOOK, encoding="utf-8")
    shutil.copytree(templates_dir, root / "templates" / "email", dirs_exist_ok=True)
    return load_project(Settings(project_dir=root, database_url=database_url, outbox_dir=root / "outbox"))


def build_store(engine: Engine, messages: int) -> None:
    """ceil(messages / 2) accounts whose contract started yesterday; contacts 1..messages,
    alternately admin and champion, two per account."""
    start = (NOW - timedelta(days=1)).date()
    renewal = date(start.year + 1, start.month, start.day)
    n_accounts = math.ceil(messages / 2)
    account_rows: Iterator[tuple[Any, ...]] = (
        (i, f"Account {i}", "tech_touch", "starter", 9000.0, 10, "onboarding", start, renewal, None, "active",
         "Europe/London", "en", {})
        for i in range(1, n_accounts + 1)
    )  # fmt: skip
    contact_rows: Iterator[tuple[Any, ...]] = (
        (c, (c + 1) // 2, f"person{c}@example.com", f"Person {c}", "admin" if c % 2 else "champion", None, None, {})
        for c in range(1, messages + 1)
    )
    with engine.begin() as conn:
        bulk_insert(
            conn,
            accounts,
            ["id", "name", "tier", "plan", "arr", "seats_purchased", "lifecycle_stage", "contract_start",
             "renewal_date", "csm_id", "status", "timezone", "locale", "traits"],
            account_rows,
        )  # fmt: skip
        bulk_insert(
            conn, contacts, ["id", "account_id", "email", "name", "role", "timezone", "locale", "traits"], contact_rows
        )


class _RecordingChannel(SendGridChannel):
    """The SendGrid channel, keeping each request body for the floor to post again (~2 µs a message)."""

    def __init__(self, host: str) -> None:
        super().__init__(API_KEY, host, timeout_s=30)
        self.bodies: list[dict[str, Any]] = []

    def send(self, email: OutgoingEmail) -> str:
        self.bodies.append(mail_body(email, self.sandbox, self.unsubscribe_group))
        return super().send(email)


# --- the two sides ------------------------------------------------------------------------------


def time_floor(url: str, bodies: list[dict[str, Any]], concurrency: int) -> float:
    """Seconds for the bare sendgrid client to post every body, `concurrency` at a time."""
    local = threading.local()

    def post(body: dict[str, Any]) -> int:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = SendGridAPIClient(api_key=API_KEY, host=url)
            client.client.timeout = 30
        return int(client.client.mail.send.post(request_body=body).status_code)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="floor-send") as pool:
        codes = list(pool.map(post, bodies))
    elapsed = time.perf_counter() - started
    if any(code != 202 for code in codes):
        raise RuntimeError(f"the floor got answers other than 202: {sorted(set(codes))}")
    return elapsed


def time_engine(engine: Engine, project: Project, channel: SendGridChannel, concurrency: int) -> float:
    """Seconds for claim + deliver_batch (batches of 500) to send every planned message."""
    settings = DispatchSettings(attempts=1, concurrency=concurrency)
    started = time.perf_counter()
    while ids := claim_batch(engine, NOW, DISPATCH_BATCH, playbook_ids=[PLAYBOOK_ID]):
        deliver_batch(engine, project, ids, channel, NOW, "bench-dispatch", settings=settings)
    return time.perf_counter() - started


def run(messages: int, concurrency: int, templates_dir: Path, workdir: Path | None = None) -> DispatchBench:
    """Build the scratch store, then time the engine, then the floor with the bodies the engine sent."""
    if messages < 1 or concurrency < 1:
        raise ValueError("messages and concurrency must be positive")
    root = Path(tempfile.mkdtemp(prefix="touchflow-bench-dispatch-", dir=workdir))
    try:
        url = f"sqlite:///{root / 'store.db'}"
        engine = connect(url)
        started = time.perf_counter()
        migrate(engine)
        project = write_project(root / "project", url, templates_dir)
        build_store(engine, messages)
        evaluate_and_advance(engine, project, PLAYBOOK_ID, NOW, "bench-plan", "sendgrid")
        build_s = time.perf_counter() - started
        with mail_server() as server:
            time_floor(server, [WARM_UP_BODY] * min(200, messages), concurrency)  # connections, imports
            channel = _RecordingChannel(server)
            engine_s = time_engine(engine, project, channel, concurrency)
            answered = server_stats(server)["requests"]
            if len(channel.bodies) != messages:
                raise RuntimeError(f"the engine sent {len(channel.bodies)} messages, expected {messages}")
            floor_s = time_floor(server, channel.bodies, concurrency)
        with engine.connect() as conn:
            sent = conn.execute(select(func.count()).where(ledger.c.status == "sent")).scalar_one()
        engine.dispose()
        warm_up = min(200, messages)
        return DispatchBench(messages, concurrency, engine_s, floor_s, int(sent), int(answered) - warm_up, build_s)
    finally:
        shutil.rmtree(root, ignore_errors=True)
