"""Bounds on rendering one message from an untrusted template: time, output, loops, value sizes.

Every render runs inside `bounded(limits, fn)`, a *scope* on the rendering thread. The scope
carries the budgets the sandbox draws on (loop iterations, output characters) and a deadline.
One watchdog thread serves every scope of the process: at a scope's deadline it raises
`_Deadline` in the rendering thread (`PyThreadState_SetAsyncExc`), which stops pure-Python work
anywhere — an empty nested loop, a macro recursing in a tree — where no budget is drawn on. A
single C-level operation cannot be interrupted, so the sandbox also refuses, before running them,
operations that would build huge values (see `engine/render/sandbox.py`).
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar


@dataclass(frozen=True)
class RenderLimits:
    """What one message may cost. Generous for real templates: an email is a few kilobytes and
    renders in well under a millisecond."""

    seconds: float = 2.0
    """Wall time to render one message (every part of it)."""
    output: int = 5_000_000
    """Characters the message's templates may write (subject, HTML and text together)."""
    value: int = 5_000_000
    """Characters of a string, or items of a list, that one template operation may build."""
    iterations: int = 250_000
    """`{% for %}` iterations per message, nested loops included."""
    range: int = 100_000
    """Items of one `range()`."""
    int_bits: int = 100_000
    """Bits of a number built by `*` or `**` (a number that size has over 30,000 digits)."""


DEFAULT_LIMITS = RenderLimits()


class LimitExceeded(Exception):
    """A template went over one of its limits; the message says which, for the audit."""


class _Deadline(BaseException):
    """Raised asynchronously in a rendering thread at its deadline. A BaseException, so that no
    `except Exception` on the way (in Jinja or a filter) can swallow it."""


class _Scope:
    """The budgets and the deadline of one render on one thread."""

    __slots__ = ("active", "deadline", "fired", "iterations", "limits", "output", "tid")

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.tid = threading.get_ident()
        self.deadline = time.monotonic() + limits.seconds
        self.iterations = limits.iterations
        self.output = limits.output
        self.active = True
        self.fired = False


_local = threading.local()
_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
_set_async_exc.argtypes = (ctypes.c_ulong, ctypes.py_object)
_set_async_exc.restype = ctypes.c_int
_NULL = ctypes.py_object()  # a NULL exception withdraws a pending one


class _Watchdog:
    """One thread for every render in the process; sleeps until the earliest pending deadline
    (or until a render starts, when none is pending)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._scopes: dict[int, _Scope] = {}
        self._next = math.inf  # when the watchdog wakes next; inf while it waits for work
        self._started = False

    def reset(self) -> None:
        """In a forked child: no watchdog thread there (threads do not survive fork), maybe a held lock."""
        self.__init__()  # type: ignore[misc]

    def enter(self, scope: _Scope) -> None:
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name="touchflow-render-watchdog", daemon=True).start()
            self._scopes[scope.tid] = scope
            # Renders start at ~4,000/s: wake the watchdog only when this deadline comes first.
            if scope.deadline < self._next:
                self._wake.notify()

    def leave(self, scope: _Scope) -> None:
        """Deregister; afterwards no deadline exception is pending or can come for this scope."""
        while True:
            try:
                with self._lock:
                    scope.active = False
                    if self._scopes.get(scope.tid) is scope:
                        del self._scopes[scope.tid]
                    if scope.fired:  # fired but perhaps not yet delivered: withdraw it
                        _set_async_exc(scope.tid, _NULL)
                return
            except _Deadline:  # delivered inside this method: it is spent, make sure and go
                continue

    def _run(self) -> None:
        with self._lock:
            while True:
                now = time.monotonic()
                pending = [s for s in self._scopes.values() if not s.fired]
                for scope in pending:
                    if scope.deadline <= now and scope.active:
                        scope.fired = True
                        _set_async_exc(scope.tid, ctypes.py_object(_Deadline))
                waiting = [s.deadline for s in pending if not s.fired]
                self._next = min(waiting, default=math.inf)
                self._wake.wait(None if self._next == math.inf else self._next - now)


_WATCHDOG = _Watchdog()
os.register_at_fork(after_in_child=_WATCHDOG.reset)
_T = TypeVar("_T")


def bounded(limits: RenderLimits, render: Callable[[], _T]) -> _T:
    """Run `render()` under `limits`; over a limit it raises LimitExceeded saying which.

    Reentrant: inside another bounded render on this thread, `render` shares that scope (a
    subject template rendered within an email counts against the email's budgets and deadline).
    """
    if getattr(_local, "scope", None) is not None:
        return render()
    scope = _Scope(limits)
    try:
        try:
            _local.scope = scope
            _WATCHDOG.enter(scope)
            return render()
        finally:
            _WATCHDOG.leave(scope)
            _local.scope = None
    except _Deadline:
        # Also reached when the exception lands in the `finally` above, before `leave` ran.
        _WATCHDOG.leave(scope)
        _local.scope = None
        raise LimitExceeded(f"render exceeded {limits.seconds:g} s") from None


def current_limits() -> RenderLimits:
    """The limits of the render running on this thread (the defaults outside one: compile time)."""
    scope: _Scope | None = getattr(_local, "scope", None)
    return scope.limits if scope is not None else DEFAULT_LIMITS


def collect(chunks: Iterable[str]) -> str:
    """Join a template's output as it streams, drawing on the scope's output budget."""
    scope: _Scope | None = getattr(_local, "scope", None)
    if scope is None:
        return "".join(chunks)
    parts: list[str] = []
    append, budget = parts.append, scope.output  # locals: this loop runs once per chunk
    for chunk in chunks:
        budget -= len(chunk)
        if budget < 0:
            raise LimitExceeded(f"output over {scope.limits.output:,} characters")
        append(chunk)
    scope.output = budget
    return "".join(parts)


def counted(iterable: Iterable[_T]) -> Iterator[_T]:
    """Iterate for a template's `{% for %}`, drawing on the scope's iteration budget."""
    scope: _Scope | None = getattr(_local, "scope", None)
    if scope is None:
        yield from iterable
        return
    for item in iterable:
        scope.iterations -= 1
        if scope.iterations < 0:
            raise LimitExceeded(f"loops ran over {scope.limits.iterations:,} iterations")
        yield item
