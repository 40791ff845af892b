"""Webhook steps against a real local HTTP server: rendered JSON body, retries, failures, secret URLs."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from tests.factories import Store
from tests.journeys.helpers import NOW, audit, enrollment, ledger_rows, load, playbook, run_tick, steps_done


@dataclass
class Received:
    path: str
    content_type: str
    body: dict[str, Any]


@dataclass
class Hook:
    """A local webhook receiver. `script[text]` lists the answers to requests whose body has that
    `text`, in order (status, or ("sleep", seconds) to answer 200 late); then 200."""

    url: str
    received: list[Received] = field(default_factory=list)
    script: dict[str, list[Any]] = field(default_factory=dict)

    def count(self, text: str) -> int:
        return sum(1 for r in self.received if r.body.get("text") == text)


@pytest.fixture
def hook() -> Iterator[Hook]:
    state: Hook

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.received.append(Received(self.path, self.headers["Content-Type"], body))
            plan = state.script.get(body.get("text"), [])
            answer = plan.pop(0) if plan else 200
            if isinstance(answer, tuple):
                threading.Event().wait(answer[1])
                answer = 200
            self.send_response(answer)
            if answer >= 500 or answer == 429:
                self.send_header("Retry-After", "0")  # retry at once: the test does not wait for backoff
            reply = b"ok" if answer < 400 else b"nope"
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that timed out closed the socket: expected

    server = Server(("127.0.0.1", 0), Handler)
    state = Hook(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def _notify(pid: str, target: str, retries: int = 2) -> str:
    return playbook(
        pid,
        f"""\
  - id: notify
    webhook:
      {target}
      body:
        text: "{{{{ account.name }}}}"
        tier: "{{{{ account.tier }}}}"
        n: 3
        tags: ["{{{{ account.plan }}}}", 1]
      timeout: 1s
      retries: {retries}
  - id: after
    task: {{title: "After the webhook"}}
""",
    )


def test_webhook_posts_the_rendered_body_and_retries(
    db: Engine, db_url: str, tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("engine.dispatch.retry.random.random", lambda: 0.0)  # backoff after a timeout: 0.25 s
    store = Store(db, NOW)
    names = ["Fine Co", "Flaky Co", "Broken Co", "Down Co", "Slow Co"]
    ids = {name: store.account(name=name, plan="hooks") for name in names}
    hook.script = {"Flaky Co": [500, 500], "Broken Co": [404], "Down Co": [503, 503, 503], "Slow Co": [("sleep", 1.5)]}
    proj = load(tmp_path, db_url, _notify("hooks", f'url: "{hook.url}/renewals?token=s3cret"'))

    summary = run_tick(db, proj, NOW)["hooks"]
    assert (summary.tasks, summary.failed) == (5, 2)

    fine = next(r for r in hook.received if r.body["text"] == "Fine Co")
    assert fine.path == "/renewals?token=s3cret"
    assert fine.content_type == "application/json"
    assert fine.body == {"text": "Fine Co", "tier": "tech_touch", "n": 3, "tags": ["hooks", 1]}
    assert [hook.count(n) for n in names] == [1, 3, 1, 3, 2]

    notified = ledger_rows(db, step_id="notify")
    outcome = {r.account_id: (r.kind, r.status, r.provider_message_id, r.error) for r in notified}
    sent = ("webhook", "sent", "http:200", None)
    assert outcome[ids["Fine Co"]] == outcome[ids["Flaky Co"]] == outcome[ids["Slow Co"]] == sent
    assert outcome[ids["Broken Co"]] == ("webhook", "failed", None, "HTTP 404: nope")
    assert outcome[ids["Down Co"]] == ("webhook", "failed", None, "gave up after 3 attempts; last: HTTP 503: nope")

    (called,) = audit(db, account_id=ids["Flaky Co"], decision="webhook_called")
    assert (called.reason, called.step_id, called.detail) == (
        "webhook_delivered",
        "notify",
        f"POST to {hook.url}/renewals: HTTP 200",  # the query string (often a token) is left out
    )
    (failed,) = audit(db, account_id=ids["Broken Co"], decision="failed")
    assert (failed.reason, failed.step_id, failed.detail) == ("webhook_failed", "notify", "HTTP 404: nope")
    for name in names:  # the journey goes on whatever the webhook's fate
        assert steps_done(db, ids[name]) == ["notify", "after"]
        assert enrollment(db, ids[name]).status == "completed"


def test_webhook_url_from_the_environment(
    db: Engine, db_url: str, tmp_path: Path, hook: Hook, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = f"{hook.url}/services/T000/B000/XXXXSECRETXXXX"
    monkeypatch.delenv("TOUCHFLOW_TEST_HOOK", raising=False)
    store = Store(db, NOW)
    missing = store.account(name="Missing Co", plan="env-hook")
    proj = load(tmp_path, db_url, _notify("env-hook", "url_env: TOUCHFLOW_TEST_HOOK"))

    run_tick(db, proj, NOW)
    (row,) = ledger_rows(db, account_id=missing, step_id="notify")
    assert (row.status, row.error) == ("failed", "environment variable TOUCHFLOW_TEST_HOOK is not set")
    (failed,) = audit(db, account_id=missing, decision="failed")
    assert (failed.reason, failed.detail) == ("webhook_failed", "environment variable TOUCHFLOW_TEST_HOOK is not set")
    assert hook.received == []

    monkeypatch.setenv("TOUCHFLOW_TEST_HOOK", secret)
    present = store.account(name="Present Co", plan="env-hook")
    run_tick(db, proj, NOW.replace(hour=10))
    assert [(r.path, r.body["text"]) for r in hook.received] == [("/services/T000/B000/XXXXSECRETXXXX", "Present Co")]
    (row,) = ledger_rows(db, account_id=present, step_id="notify")
    assert row.status == "sent"
    (called,) = audit(db, account_id=present, decision="webhook_called")
    assert called.detail == "POST to $TOUCHFLOW_TEST_HOOK: HTTP 200"
    everything = [str(tuple(r)) for r in audit(db)] + [str(tuple(r)) for r in ledger_rows(db)]
    assert not [line for line in everything if "SECRET" in line or hook.url in line]


def test_a_malformed_url_env_fails_without_leaking_it(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOUCHFLOW_TEST_HOOK", "hooks.example.com/services/T000/B000/XXXXSECRETXXXX")  # no scheme
    acc = Store(db, NOW).account(plan="bad-hook")
    proj = load(tmp_path, db_url, _notify("bad-hook", "url_env: TOUCHFLOW_TEST_HOOK", retries=0))

    run_tick(db, proj, NOW)

    (row,) = ledger_rows(db, account_id=acc, step_id="notify")
    (failed,) = audit(db, account_id=acc, decision="failed")
    assert row.status == "failed"
    assert "SECRET" not in (row.error or "")  # actual: "outbox: ValueError: unknown url type: 'hooks.example…SECRET…'"
    assert "SECRET" not in failed.detail
    assert failed.reason == "webhook_failed"  # actual: channel_error
