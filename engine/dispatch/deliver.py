"""Deliver claimed ledger rows: the policy gate, then windows rendered, marked `sending` and sent
while the next window renders and the previous window's outcomes are written.

The modules around it: `claims.py` (claimed → sending), `context.py` (the customer rows and the
template variables), `actions.py` (tasks and webhooks), `outcomes.py` (a send's result as the
row's outcome, and writing a window of them), `settings.py` (what a dispatch works with).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, select

from engine.approvals.hold import hold_unapproved
from engine.audit import Reason, ledger_fields
from engine.dispatch.actions import task_outcome, webhook_outcome
from engine.dispatch.archiving import archive_window
from engine.dispatch.channels import OutgoingEmail, SendError
from engine.dispatch.claims import mark_sending, unmark_sending
from engine.dispatch.context import BatchContext, RenderJob, email_job, load_context, outgoing_email, split_unreadable
from engine.dispatch.outcomes import DispatchResult, Outcome, failed, send_failure, send_wait, sent, write_outcomes
from engine.dispatch.settings import Dispatch, DispatchSettings
from engine.dispatch.webhook import WebhookError
from engine.policy.gate import gate
from engine.policy.ratelimit import on_time
from engine.render import RenderError
from engine.spec.policy import Policy
from engine.store.models import ledger
from engine.unsubscribe import record_recipients

WINDOW_PER_THREAD = 8
"""A window is this many emails per sending thread: large enough that its statements and commits
are few per email, small enough that a crash strands little (at most two windows). 8 rather than
4: with dispatcher processes of 4 threads each, windows of 16 spent ~5 % more per email on
statements (`touchflow bench dispatch --dispatchers 2`, docs/benchmarks.md)."""

Outgoing = tuple[Row[Any], dict[str, Any], OutgoingEmail]
"""A rendered email ready for the channel: its ledger row, the row's audit fields, the email."""


def deliver(
    conn: Connection,
    ids: Sequence[int],
    dispatch: Dispatch,
    *,
    now: datetime,
    run_id: str,
    commit: Callable[[], None] | None = None,
    token: str | None = None,
) -> DispatchResult:
    """Render and deliver claimed rows; record each outcome and its audit row. With `token` (the
    claim's), rows no longer held under it are left alone.

    Rows go through in windows of `WINDOW_PER_THREAD × concurrency`: a window is rendered, marked `sending`
    (committed) and handed to the sending threads; while it is in flight the next window renders
    and the outcomes of the one before are written, a window per statement. So a crash strands at
    most two windows (left `sending`, reconciled later, never resent blindly), and the threads
    never wait on rendering or on the database.

    With `commit`, outcomes are committed as soon as their window is written; without it the
    caller owns the transaction (dry runs roll back). One row's failure — a template, an address,
    a provider error — fails that row with its reason; the rest of the batch goes on.
    """
    settings = dispatch.settings
    result = DispatchResult()
    rows = conn.execute(select(ledger).where(ledger.c.id.in_(ids)).order_by(ledger.c.id)).all()
    if token is not None:
        rows = [r for r in rows if r.claim_token == token and r.status == "claimed"]
    policy = settings.policy or Policy()
    ctx = load_context(conn, rows, team=settings.team_sender, links=settings.links, policy=policy)
    rows, unreadable = split_unreadable(rows, ctx, now, run_id)
    if unreadable:  # skipped before the gate, which reads the same rows
        write_outcomes(conn, unreadable, now, result, policy)
    if settings.approvals:  # unapproved content waits before it takes any cap's slot (engine/approvals/)
        held = hold_unapproved(
            conn,
            rows,
            renderer=dispatch.renderer,
            contacts_by_id=ctx.contacts,
            accounts_by_id=ctx.accounts,
            now=now,
            run_id=run_id,
        )
        rows = held.cleared
        result.deferred.update(held.deferred)
    # The policy first, in its own short transaction (it holds the policy lock): only what it
    # clears is rendered and sent; deferrals and skips are written and audited by the gate.
    gated = gate(
        conn,
        rows,
        contacts_by_id=ctx.contacts,
        accounts_by_id=ctx.accounts,
        playbooks=dispatch.playbooks,
        policy=policy,
        now=now,
        run_id=run_id,
    )
    if commit is not None:
        commit()
    result.deferred.update(gated.deferred)
    result.skipped.update(gated.skipped)
    rows = sorted([r for r in rows if r.kind != "email"] + gated.cleared, key=lambda r: r.id)

    def settle(outcomes: Sequence[Outcome]) -> None:
        if outcomes:
            write_outcomes(conn, outcomes, now, result, policy)
            if commit is not None:
                commit()

    def collect(sender: _Sender) -> None:
        outcomes, error = sender.collect_oldest()
        settle(outcomes)
        if error is not None:
            raise error

    window = max(1, settings.concurrency) * WINDOW_PER_THREAD
    sender = _Sender(dispatch, now)
    try:
        with sender:
            for start in range(0, len(rows), window):
                part = rows[start : start + window]
                done, outgoing = _prepare(conn, part, dispatch, ctx, now=now, run_id=run_id, commit=commit)
                settle(done)
                if outgoing:
                    moved = mark_sending(conn, [row for row, _, _ in outgoing], now)
                    # Committed with `sending`, before anything leaves: each message's unsubscribe
                    # link unsubscribes this address, whatever the contact's address becomes.
                    recipients = [(row.id, email.to_email) for row, _, email in outgoing if row.id in moved]
                    record_recipients(conn, recipients)
                    if settings.archive:  # the message as sent, in the same commit: nothing sent lacks it
                        archive_window(conn, [email for row, _, email in outgoing if row.id in moved], now)
                    if commit is not None:
                        commit()
                    # Only what is still ours goes out: never a row another dispatcher now holds.
                    mine = [item for item in outgoing if item[0].id in moved]
                    try:
                        _submit_paced(sender, mine, settings)
                    except BaseException:  # no send time for the window: what was not handed over
                        sender.unsent.update((row.id, row) for row, _, _ in mine if row.id not in sender.submitted)
                        raise
                while sender.in_flight > 1:  # keep one window sending while the next one renders
                    collect(sender)
            while sender.in_flight:
                collect(sender)
    except BaseException:
        # A send time that could not be reserved (the limiter's server unreachable), for a window
        # or for a late message, leaves rows `sending` that never left: back to `claimed`, so the
        # batch's release frees them instead of their ending `unknown`. The sender let every
        # window in flight finish first, so the list is whole.
        if sender.unsent:
            unmark_sending(conn, list(sender.unsent.values()), now)
            if commit is not None:
                commit()
        raise
    return result


def _submit_paced(sender: _Sender, outgoing: list[Outgoing], settings: DispatchSettings) -> None:
    """Hand a window to the sending threads, each message with its send time under the global
    rate: one reservation per window (or per part of it, when the limiter's grant runs out
    first), taken after the commit so its first moments are not spent on it."""
    if settings.limiter is None:
        sender.submit(outgoing)
        return
    while outgoing:
        slots = settings.limiter.reserve(len(outgoing))
        if not slots:
            raise RuntimeError("the rate limiter handed out no send time")
        sender.submit(outgoing[: len(slots)], slots)
        outgoing = outgoing[len(slots) :]


def _prepare(
    conn: Connection,
    rows: Sequence[Row[Any]],
    dispatch: Dispatch,
    ctx: BatchContext,
    *,
    now: datetime,
    run_id: str,
    commit: Callable[[], None] | None,
) -> tuple[list[Outcome], list[Outgoing]]:
    """Settle what needs no provider (tasks, webhooks, render failures); build the emails."""
    done: list[Outcome] = []
    outgoing: list[Outgoing] = []
    pending: list[tuple[Row[Any], dict[str, Any], RenderJob]] = []
    for row in rows:
        base = ledger_fields(row, now, run_id)
        playbook = dispatch.playbooks.get(row.playbook_id)
        try:
            if playbook is None:
                raise RenderError(f"playbook '{row.playbook_id}' is no longer loaded")
            if row.kind == "task":
                done.append(task_outcome(row, playbook, ctx, now, base))
            elif row.kind == "webhook":
                moved = mark_sending(conn, [row], now)  # the POST may land even if we die now
                if commit is not None:
                    commit()
                if row.id not in moved:
                    continue  # requeued meanwhile: another dispatcher holds it
                done.append(webhook_outcome(row, playbook, ctx, dispatch.post, base))
            else:
                pending.append((row, base, email_job(row, playbook, ctx)))
        except RenderError as exc:
            done.append(failed(row, base, Reason.RENDER_FAILED, str(exc)))
        except WebhookError as exc:
            done.append(failed(row, base, Reason.WEBHOOK_FAILED, str(exc)))
        except Exception as exc:
            done.append(failed(row, base, Reason.CHANNEL_ERROR, f"{type(exc).__name__}: {exc}"))
    for row, base, (name, chain, context, subject) in pending:
        try:
            rendered = dispatch.renderer.render(name, chain, context, subject=subject)
            outgoing.append((row, base, outgoing_email(row, context, rendered, now)))
        except RenderError as exc:
            done.append(failed(row, base, Reason.RENDER_FAILED, str(exc)))
    return done, outgoing


class _Sender:
    """Windows of emails in flight on `settings.concurrency` threads (or inline, for one)."""

    def __init__(self, dispatch: Dispatch, now: datetime) -> None:
        self.channel, self.settings, self.now = dispatch.channel, dispatch.settings, now
        self._windows: deque[list[Outcome | Future[Any]]] = deque()
        self._pool: ThreadPoolExecutor | None = None
        self._retimer: ThreadPoolExecutor | None = None
        self.submitted: set[int] = set()
        """Ledger ids handed to the sending threads (or, inline, to the channel)."""
        self.unsent: dict[int, Row[Any]] = {}
        """Rows marked `sending` that never left: no send time could be reserved for them."""
        if self.settings.concurrency > 1:
            self._pool = ThreadPoolExecutor(max_workers=self.settings.concurrency, thread_name_prefix="touchflow-send")
            if self.settings.limiter is not None:  # only paced messages can be late
                self._retimer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="touchflow-retime")

    def __enter__(self) -> _Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        # After a failure mid-batch, the windows in flight still go out (their outcomes are not
        # written: they are settled from the provider's events), retimed messages included; so
        # both executors are idle before either shuts down (each hands messages to the other).
        while self._windows:
            for item in self._windows.popleft():
                with suppress(Exception):
                    _outcome(item)
        if self._retimer is not None:
            self._retimer.shutdown(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    @property
    def in_flight(self) -> int:
        """Windows handed over and not yet collected."""
        return len(self._windows)

    def submit(self, outgoing: list[Outgoing], slots: list[float] | None = None) -> None:
        """Start sending a window (inline without a pool: done when this returns); with `slots`,
        each message waits for its send time first."""
        times: list[float | None] = list(slots) if slots is not None else [None] * len(outgoing)
        items = list(zip(outgoing, times, strict=True))
        if self._pool is None:
            done: list[Outcome | Future[Any]] = []
            self._windows.append(done)  # what was sent before a failure is settled from events
            for item, at in items:
                self.submitted.add(item[0].id)
                done.append(self._send(item, at))
        else:
            self.submitted.update(item[0].id for item in outgoing)
            self._windows.append([self._pool.submit(self._send, item, at) for item, at in items])

    def collect_oldest(self) -> tuple[list[Outcome], BaseException | None]:
        """Wait for the oldest window's outcomes (through any new send times they had to take),
        and the first error of a message whose new send time could not be reserved (its row is
        in `unsent`): the outcomes of the others are written before that error is raised."""
        outcomes: list[Outcome] = []
        error: BaseException | None = None
        for item in self._windows.popleft():
            try:
                outcomes.append(_outcome(item))
            except BaseException as exc:
                error = error or exc
        return outcomes, error

    def _send(self, item: Outgoing, send_at: float | None) -> Outcome | Future[Any]:
        """Send with retries on retryable answers (backoff with jitter, honouring Retry-After), not
        before `send_at` (unix seconds by `settings.clock`; the global rate's schedule). A message
        its process stalled past `send_at` is not sent late (a stall never becomes a burst): it
        takes a new send time (`_retime`), and its outcome comes through the returned future."""
        row, base, email = item
        settings: DispatchSettings = self.settings
        limiter = settings.limiter
        if (
            send_at is not None
            and limiter is not None
            and not on_time(limiter, send_at, sleep=settings.sleep, clock=settings.clock)
        ):
            if self._retimer is None:  # one thread: the wait for a new moment is its own
                return self._send(item, self._new_time(item))
            return self._retimer.submit(self._retime, item)
        attempts = 0
        while True:
            attempts += 1
            try:
                provider_id = self.channel.send(email)
            except SendError as exc:
                if exc.kind == "retry" and attempts < settings.attempts:
                    settings.sleep(send_wait(attempts - 1, exc.retry_after))
                    continue
                return send_failure(row, base, exc, attempts, self.now)
            except Exception as exc:
                return failed(row, base, Reason.CHANNEL_ERROR, f"{self.channel.name}: {type(exc).__name__}: {exc}")
            return sent(row, base, email, provider_id)

    def _retime(self, item: Outgoing) -> Future[Any]:
        """A new send time for a late message, taken on the one retiming thread: a limiter may make
        it wait for its next grant (seconds), and a sending thread waiting there could not send the
        messages behind it whose moments are still ahead (a stall of 0.1 s cost a whole grant when
        every sending thread waited so). The message then goes back to the sending threads."""
        assert self._pool is not None
        return self._pool.submit(self._send, item, self._new_time(item))

    def _new_time(self, item: Outgoing) -> float:
        """A late message's new send time; when none can be reserved, the message is noted as
        never sent (`unsent`) and the error raised."""
        assert self.settings.limiter is not None
        try:
            return self.settings.limiter.reserve(1)[0]
        except BaseException:
            self.unsent[item[0].id] = item[0]
            raise


def _outcome(item: Outcome | Future[Any]) -> Outcome:
    """The outcome at the end of a chain of futures (a retimed message's is two links longer)."""
    while isinstance(item, Future):
        item = item.result()
    return item
