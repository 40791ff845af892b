"""`touchflow bench dispatch`: the dispatch stage through the SendGrid channel, against the floor.

Both sides post to the same local mail-send server, at the same concurrency, in the same run:

* the floor — the bare `sendgrid` client in this one process (one client per thread, `concurrency`
  threads) posting the very bodies the engine sent (the server keeps them as they arrived): what
  sending costs with nothing around it;
* the engine — the dispatch stage with the `SendGridChannel`, `attempts=1`: claiming, loading the
  rows and their context, the policy gate, rendering, building each body, archiving it, and
  committing every outcome with its audit row. With `dispatchers=1`, `claim_batch` +
  `deliver_batch` in batches of 500 in this process, `concurrency` sending threads; with N, the
  production path of `touchflow run --dispatchers N` (`dispatch_in_processes`, PostgreSQL only),
  `concurrency / N` sending threads in each process, so that as many requests are in flight as on
  the floor. The time includes starting the processes.

The server (`serve`) runs in its own process, so its work does not compete with the client side
for the interpreter lock. The store is a scratch SQLite file in a temporary directory, or a new
schema of the PostgreSQL database given (dropped afterwards), with `messages` planned email
ledger rows, planned by the engine itself (one-step playbook, a date trigger, admin + champion
contacts).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
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

from benchmarks.scratch import scratch_store
from engine.config import MAX_DISPATCHERS, Settings
from engine.dispatch.sendgrid_channel import SendGridChannel
from engine.dispatch.settings import DispatchSettings
from engine.project import Project, load_project
from engine.store.bulk import bulk_insert
from engine.store.models import accounts, contacts, ledger
from engine.tick import DISPATCH_BATCH, claim_batch, deliver_batch, evaluate_and_advance
from engine.tick.dispatchers import MIN_PROCESS_BATCH, dispatch_in_processes

NOW = datetime(2026, 11, 23, 9, 0)
API_KEY = "SG.bench-dispatch"
KEY_ENV = "TOUCHFLOW_BENCH_SENDGRID_KEY"  # dispatcher processes read the key from here
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
    dispatchers: int = 1
    database: str = "sqlite"
    floor_processes_s: float | None = None
    """With dispatcher processes: the bare client in as many processes (sending time only)."""

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
            "dispatchers": self.dispatchers,
            "database": self.database,
            "engine_s": round(self.engine_s, 3),
            "floor_s": round(self.floor_s, 3),
            "sent": self.sent,
            "server_requests": self.server_requests,
            "build_s": round(self.build_s, 1),
            **self._against_processes(),
        }

    def _against_processes(self) -> dict[str, Any]:
        """With N dispatchers, also the bare client in N processes: the floor above is one
        interpreter, which the engine's N processes can outrun on several cores."""
        if self.floor_processes_s is None:
            return {}
        floor = self.messages / self.floor_processes_s if self.floor_processes_s else float("inf")
        return {
            "floor_processes_msgs_per_s": round(floor, 1),
            "ratio_to_floor_processes": round(self.msgs_per_s / floor if floor else 0.0, 3),
        }


# --- the local mail-send server (its own process) ----------------------------------------------


class _MailHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BenchMail/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server = self.server
        assert isinstance(server, _MailServer)
        with server.lock:
            server.requests += 1
            n = server.requests
            server.bodies.append(body)  # the floor posts them again, as they arrived
        self.send_response(202)
        self.send_header("X-Message-Id", f"bench-{n}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_GET(self) -> None:
        """/count: requests answered so far and the server's CPU time; /bodies: the bodies
        received since the last /bodies, as a JSON array (and forgotten)."""
        server = self.server
        assert isinstance(server, _MailServer)
        with server.lock:
            answered = server.requests
            bodies: list[bytes] = []
            if self.path == "/bodies":
                bodies, server.bodies = server.bodies, []
        if self.path == "/bodies":
            data = b"[" + b",".join(bodies) + b"]"
        else:
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
        self.bodies: list[bytes] = []


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
    with urllib.request.urlopen(f"{url}/count", timeout=10) as response:
        return dict(json.loads(response.read()))


def received_bodies(url: str) -> list[dict[str, Any]]:
    """The request bodies the server received since this was last asked, in arrival order."""
    with urllib.request.urlopen(f"{url}/bodies", timeout=60) as response:
        return list(json.loads(response.read()))


# --- the store --------------------------------------------------------------------------------


def write_project(root: Path, database_url: str, templates_dir: Path, touchflow_yaml: str = "") -> Project:
    """A project with one one-step email playbook, rendering the real project's templates (and
    `touchflow_yaml`, when given: the channel dispatcher processes build for themselves)."""
    (root / "playbooks").mkdir(parents=True, exist_ok=True)
    (root / "playbooks" / f"{PLAYBOOK_ID}.yaml").write_text(PLAYBOOK, encoding="utf-8")
    if touchflow_yaml:
        (root / "touchflow.yaml").write_text(touchflow_yaml, encoding="utf-8")
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


def time_floor_processes(url: str, bodies: list[dict[str, Any]], concurrency: int, processes: int) -> float:
    """Seconds for the bare client in `processes` spawned processes (`concurrency / processes`
    threads each, a share of the bodies each) to post every body, from the moment all are ready:
    starting them and handing them the bodies is not counted (the floor's best case)."""
    context = multiprocessing.get_context("spawn")
    ready, results = context.Barrier(processes + 1), context.Queue()
    children = [
        context.Process(target=_floor_child, args=(url, bodies[i::processes], concurrency // processes, ready, results))
        for i in range(processes)
    ]
    for child in children:
        child.start()
    try:
        ready.wait(timeout=120)
        spans = [results.get(timeout=600) for _ in children]
    finally:
        for child in children:
            child.join(30)
            if child.is_alive():
                child.terminate()
    if any(isinstance(span, str) for span in spans):
        raise RuntimeError(f"a floor process failed: {next(s for s in spans if isinstance(s, str))}")
    return float(max(end for _, end in spans) - min(start for start, _ in spans))


def _floor_child(url: str, bodies: list[dict[str, Any]], threads: int, ready: Any, results: Any) -> None:
    """One floor process: once every process is ready, post its bodies; (start, end) by the wall
    clock (shared between processes), or its error."""
    try:
        time_floor(url, [WARM_UP_BODY] * min(20, len(bodies)), threads)  # its own imports and connections
        ready.wait(timeout=120)
        started = time.time()
        time_floor(url, bodies, threads)
        results.put((started, time.time()))
    except Exception as exc:  # said to the parent, which fails the benchmark with it
        results.put(f"{type(exc).__name__}: {exc}")


def time_engine(engine: Engine, project: Project, channel: SendGridChannel, concurrency: int) -> float:
    """Seconds for claim + deliver_batch (batches of 500) in this process to send every planned message."""
    settings = DispatchSettings(attempts=1, concurrency=concurrency)
    started = time.perf_counter()
    while ids := claim_batch(engine, NOW, DISPATCH_BATCH, playbook_ids=[PLAYBOOK_ID]):
        deliver_batch(engine, project, ids, channel, NOW, "bench-dispatch", settings=settings)
    return time.perf_counter() - started


def time_processes(project: Project, dispatchers: int) -> float:
    """Seconds for `dispatchers` processes (`touchflow run --dispatchers N`'s path, the channel
    from the project's `touchflow.yaml`) to send every planned message, starting them included."""
    batch = max(DISPATCH_BATCH // dispatchers, MIN_PROCESS_BATCH)  # as a tick splits its batch
    started = time.perf_counter()
    dispatch_in_processes(project.settings, NOW, "bench-dispatch", [PLAYBOOK_ID], dispatchers, batch=batch)
    return time.perf_counter() - started


def run(
    messages: int,
    concurrency: int,
    templates_dir: Path,
    workdir: Path | None = None,
    *,
    dispatchers: int = 1,
    database_url: str | None = None,
) -> DispatchBench:
    """Build the scratch store (SQLite, or a schema of the PostgreSQL `database_url`), then time
    the engine, then the floor with the bodies the engine sent."""
    if messages < 1 or concurrency < 1:
        raise ValueError("messages and concurrency must be positive")
    if not 1 <= dispatchers <= MAX_DISPATCHERS:
        raise ValueError(f"dispatchers must be between 1 and {MAX_DISPATCHERS}")
    if dispatchers > 1 and (database_url is None or not database_url.startswith("postgresql")):
        raise ValueError("dispatcher processes share a PostgreSQL store: give its URL (SQLite has one writer)")
    if concurrency % dispatchers:
        raise ValueError(
            f"concurrency {concurrency} does not split evenly over {dispatchers} dispatchers: each process"
            " sends on the same number of threads, so that as many requests are in flight as on the floor"
        )
    root = Path(tempfile.mkdtemp(prefix="touchflow-bench-dispatch-", dir=workdir))
    try:
        with scratch_store(database_url, root, "dispatch") as engine, mail_server() as server:
            started = time.perf_counter()
            url = engine.url.render_as_string(hide_password=False)
            yaml = (
                f"channel: sendgrid\nsendgrid: {{api_key_env: {KEY_ENV}, host: '{server}', attempts: 1,"
                f" concurrency: {concurrency // dispatchers}}}\n"
            )
            project = write_project(root / "project", url, templates_dir, yaml)
            build_store(engine, messages)
            evaluate_and_advance(engine, project, PLAYBOOK_ID, NOW, "bench-plan", "sendgrid")
            build_s = time.perf_counter() - started
            time_floor(server, [WARM_UP_BODY] * min(200, messages), concurrency)  # connections, imports
            received_bodies(server)  # the warm-up's, forgotten
            before = server_stats(server)["requests"]
            if dispatchers == 1:
                channel = SendGridChannel(API_KEY, server, timeout_s=30)
                engine_s = time_engine(engine, project, channel, concurrency)
            else:
                with _environment({KEY_ENV: API_KEY, "TOUCHFLOW_CHANNEL": None, "TOUCHFLOW_SENDGRID_HOST": None}):
                    engine_s = time_processes(project, dispatchers)
            answered = server_stats(server)["requests"] - before
            bodies = received_bodies(server)
            if len(bodies) != messages:
                raise RuntimeError(f"the engine sent {len(bodies)} messages, expected {messages}")
            floor_s = time_floor(server, bodies, concurrency)
            floor_processes_s = None
            if dispatchers > 1:  # the floor as many interpreters as the engine had, for comparison
                floor_processes_s = time_floor_processes(server, bodies, concurrency, dispatchers)
            with engine.connect() as conn:
                sent = conn.execute(select(func.count()).where(ledger.c.status == "sent")).scalar_one()
        return DispatchBench(
            messages,
            concurrency,
            engine_s,
            floor_s,
            int(sent),
            int(answered),
            build_s,
            dispatchers,
            engine.dialect.name,
            floor_processes_s,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    """`values` set in the environment (None: unset) while the block runs — what spawned
    dispatcher processes inherit — then restored."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            _set(name, value)
        yield
    finally:
        for name, value in saved.items():
            _set(name, value)


def _set(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
