"""The outbox under storage faults and shared use, on SQLite and PostgreSQL.

A write that provably did not happen (the disk is full or read-only before the atomic rename) is
not the message's fault: the row goes back to `planned` with a backoff, the attempt is counted
and audited as `deferred / channel_unavailable` with the OS error, its temp file is removed, and
the next tick with a writable disk sends it. `index.html` lists committed `<send_key>.eml` files
only and is replaced atomically, so ticks sharing an outbox never trip over each other.

The storage faults are real where the machine allows it: a tiny tmpfs filled to the last byte or
remounted read-only (needs the right to mount, else those legs skip), a directory without write
permission (not as root: root ignores it); a rename refused with ENOSPC runs everywhere.
"""

from __future__ import annotations

import email
import email.policy
import errno
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from engine.dispatch import OutboxChannel, OutgoingEmail
from engine.dispatch.channels import ChannelUnavailable
from engine.dispatch.outcomes import UNAVAILABLE_RETRY_CAP
from engine.render import RenderedEmail
from engine.store.models import ledger
from tests.factories import Store
from tests.journeys.helpers import NOW, audit, ledger_rows, load, playbook, run_tick

HELLO = playbook("hello", "  - id: hello\n    email: {to: {role: [admin, champion]}, template: welcome/hello}\n")


class StorageFault:
    """A fault of the outbox's storage: `break_()` makes writes fail with `code`, `heal()` undoes it."""

    code: int

    def break_(self) -> None:
        raise NotImplementedError

    def heal(self) -> None:
        raise NotImplementedError


class Tmpfs(StorageFault):
    """A real 512 KiB tmpfs mounted on the outbox: filled to the last page, or remounted read-only."""

    def __init__(self, directory: Path, mode: str) -> None:
        self.directory, self.mode = directory, mode
        self.code = errno.ENOSPC if mode == "full" else errno.EROFS
        directory.mkdir(parents=True, exist_ok=True)
        mount = shutil.which("mount")
        done = subprocess.run(
            [mount or "mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(directory)], capture_output=True
        )
        if mount is None or done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or 'no mount command'})")
        self.filler = directory / "filler.bin"

    def break_(self) -> None:
        if self.mode == "read-only":
            self._mount("remount,ro")
            return
        with self.filler.open("wb", buffering=0) as fh:
            try:
                while fh.write(b"\0" * 4096):
                    pass
            except OSError as exc:
                assert exc.errno == errno.ENOSPC

    def heal(self) -> None:
        if self.mode == "read-only":
            self._mount("remount,rw")
        else:
            self.filler.unlink()

    def unmount(self) -> None:
        subprocess.run(["umount", "-l", str(self.directory)], check=False, capture_output=True)

    def _mount(self, options: str) -> None:
        subprocess.run(["mount", "-o", options, str(self.directory)], check=True, capture_output=True)


class NoWritePermission(StorageFault):
    """The outbox directory without write permission (root ignores permissions: that leg skips)."""

    code = errno.EACCES

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.break_()
        try:
            (directory / "probe").touch()
        except PermissionError:
            pass
        else:
            (directory / "probe").unlink()
            pytest.skip("directory permissions are not enforced for this user (root)")
        finally:
            self.heal()

    def break_(self) -> None:
        self.directory.chmod(0o555)

    def heal(self) -> None:
        self.directory.chmod(0o755)


class RenameRefused(StorageFault):
    """rename(2) answering ENOSPC (a directory that cannot grow): the temp file is written, the
    commit fails. Simulated by patching os.replace, so it runs on any machine."""

    code = errno.ENOSPC

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.real = os.replace

    def break_(self) -> None:
        def refuse(src: object, dst: object, **_kw: object) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

        self.monkeypatch.setattr(os, "replace", refuse)

    def heal(self) -> None:
        self.monkeypatch.setattr(os, "replace", self.real)


FAULTS = ["tmpfs-full", "tmpfs-read-only", "no-write-permission", "rename-enospc"]


@pytest.fixture
def make_fault(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, Path], StorageFault]]:
    mounted: list[Tmpfs] = []

    def make(kind: str, directory: Path) -> StorageFault:
        if kind.startswith("tmpfs-"):
            fault = Tmpfs(directory, kind.removeprefix("tmpfs-"))
            mounted.append(fault)
            return fault
        if kind == "no-write-permission":
            return NoWritePermission(directory)
        return RenameRefused(monkeypatch)

    yield make
    for fault in mounted:
        fault.unmount()


def hello_store(engine: Engine, accounts: int) -> None:
    store = Store(engine, NOW)
    for _ in range(accounts):
        acc = store.account(plan="hello")
        store.contact(acc, "admin")
        store.contact(acc, "champion")


def files(outbox: Path) -> list[str]:
    return sorted(os.listdir(outbox)) if outbox.exists() else []


@pytest.mark.parametrize("kind", FAULTS)
def test_a_storage_error_defers_every_message_and_the_next_tick_sends_them(
    db: Engine, db_url: str, tmp_path: Path, make_fault: Callable[[str, Path], StorageFault], kind: str
) -> None:
    hello_store(db, 3)
    proj = load(tmp_path, db_url, HELLO)
    outbox = proj.settings.outbox_dir
    fault = make_fault(kind, outbox)
    channel = OutboxChannel(outbox)
    assert channel.write_index() is not None  # an earlier tick's index, to be kept intact
    fault.break_()

    first = run_tick(db, proj, NOW)["hello"]
    index_written = channel.write_index()  # as the flow does after its dispatch

    rows = ledger_rows(db, playbook_id="hello")
    assert len(rows) == 6
    assert (first.emails, first.failed, first.deferred) == (0, 0, 6)
    assert {(r.status, r.attempts) for r in rows} == {("planned", 1)}
    assert all(r.not_before is not None and r.not_before > NOW for r in rows)
    reason = os.strerror(fault.code)
    assert all(str(outbox) in r.error and reason in r.error for r in rows), [r.error for r in rows]
    deferred = audit(db, decision="deferred", reason="channel_unavailable")
    assert sorted(a.send_key for a in deferred) == sorted(r.send_key for r in rows)
    assert all(errno.errorcode[fault.code] in a.detail and "next try after" in a.detail for a in deferred)
    assert not audit(db, decision="failed")
    left = files(outbox)
    assert not [name for name in left if name.startswith(".tmp-") or name.endswith(".eml")], left
    if index_written is None:  # the disk refused the index too: the last good one is intact
        assert "Outbox: 0 messages" in (outbox / "index.html").read_text(encoding="utf-8")

    fault.heal()
    second = run_tick(db, proj, NOW + timedelta(hours=2))["hello"]
    assert (second.emails, second.failed) == (6, 0)
    rows = ledger_rows(db, playbook_id="hello")
    assert {r.status for r in rows} == {"sent"}
    committed = sorted(name for name in files(outbox) if name.endswith(".eml"))
    assert committed == sorted(f"{r.send_key}.eml" for r in rows)
    for r in rows:
        message = email.message_from_bytes((outbox / f"{r.send_key}.eml").read_bytes(), policy=email.policy.default)
        assert message["X-Touchflow-Send-Key"] == r.send_key
    index = channel.write_index()
    assert index is not None
    page = index.read_text(encoding="utf-8")
    assert "Outbox: 6 messages" in page
    assert all(f"{r.send_key}.eml" in page for r in rows) and ".tmp-" not in page


def test_a_long_outage_keeps_retrying_at_a_capped_backoff(
    db: Engine, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    hello_store(db, 1)
    proj = load(tmp_path, db_url, HELLO)
    fault = RenameRefused(monkeypatch)
    fault.break_()
    at = NOW
    waits = []
    for tick in range(12):
        run_tick(db, proj, at, f"tick-{tick}")
        rows = ledger_rows(db, playbook_id="hello")
        assert {(r.status, r.attempts) for r in rows} == {("planned", tick + 1)}
        (wait,) = {r.not_before - at for r in rows}
        waits.append(wait)
        at += wait
    # Backing off, never beyond the cap, and never failed: the message is not at fault.
    assert waits == sorted(waits) and waits[0] < waits[-1] == UNAVAILABLE_RETRY_CAP
    assert not audit(db, decision="failed")
    fault.heal()
    assert run_tick(db, proj, at)["hello"].emails == 2


def test_a_message_that_cannot_be_built_still_fails_with_its_reason(db: Engine, db_url: str, tmp_path: Path) -> None:
    """Only storage errors are retried: a message the channel cannot write (here a send key that
    is not a plain file name, as hostile as it gets) fails on its own, and the rest go out."""
    hello_store(db, 1)
    proj = load(tmp_path, db_url, HELLO)
    from engine.tick import evaluate_and_advance

    evaluate_and_advance(db, proj, "hello", NOW, "plan", "outbox")
    bad, good = ledger_rows(db, playbook_id="hello")
    with db.begin() as conn:
        conn.execute(update(ledger).where(ledger.c.id == bad.id).values(send_key="../../escape"))
    summary = run_tick(db, proj, NOW)["hello"]
    assert (summary.emails, summary.failed) == (1, 1)
    rows = {r.id: r for r in ledger_rows(db, playbook_id="hello")}
    assert rows[bad.id].status == "failed" and "send key" in rows[bad.id].error
    assert rows[good.id].status == "sent"
    assert not (tmp_path / "escape.eml").exists() and not (tmp_path / "project" / "escape.eml").exists()


# --- the channel alone: no store needed ---------------------------------------------------------


def message(key: str, subject: str = "Hello", at: datetime = NOW) -> OutgoingEmail:
    rendered = RenderedEmail(subject, f"<p>{subject}</p>", subject, "en", "welcome/hello.en.html")
    return OutgoingEmail(key, "Team", "team@touchflow.example", "Ann", "ann@acme.example", rendered, "p", "s", at)


def test_a_failed_write_leaves_no_temp_file_and_says_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    channel = OutboxChannel(tmp_path / "outbox")
    RenameRefused(monkeypatch).break_()
    with pytest.raises(ChannelUnavailable) as caught:
        channel.send(message("a" * 32))
    assert caught.value.kind == "unavailable"
    assert str(tmp_path / "outbox") in str(caught.value) and "ENOSPC" in str(caught.value)
    assert files(tmp_path / "outbox") == []


def test_the_index_lists_committed_messages_only(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    channel = OutboxChannel(outbox)
    for key in ("a" * 32, "b" * 32):
        channel.send(message(key, subject=f"Subject {key[0]}"))
    shutil.copy(outbox / f"{'a' * 32}.eml", outbox / ".tmp-inflight.eml")  # another tick's write in flight
    (outbox / "gone.eml").symlink_to(outbox / "removed-meanwhile.eml")  # listed, then vanished
    (outbox / "folder.eml").mkdir()
    (outbox / "odd.eml").write_bytes(b"Date: yesterday\r\nSubject: <b>dropped in by hand</b>\r\n\r\nhi\r\n")
    (outbox / "naive.eml").write_bytes(b"Date: Mon, 23 Nov 2026 09:00:00 -0000\r\nSubject: naive\r\n\r\nhi\r\n")

    index = channel.write_index()
    assert index is not None
    page = index.read_text(encoding="utf-8")
    assert "Outbox: 4 messages" in page
    assert "Subject a" in page and "Subject b" in page and "&lt;b&gt;dropped in by hand" in page
    assert ".tmp-" not in page and "gone.eml" not in page and "folder.eml" not in page
    assert [name for name in files(outbox) if name.startswith(".tmp-")] == [".tmp-inflight.eml"]


def test_the_index_is_replaced_atomically_and_kept_when_the_disk_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox = tmp_path / "outbox"
    channel = OutboxChannel(outbox)
    channel.send(message("a" * 32))
    index = channel.write_index()
    assert index is not None
    before = index.read_bytes()
    channel.send(message("b" * 32))
    RenameRefused(monkeypatch).break_()
    assert channel.write_index() is None
    assert index.read_bytes() == before  # the last good index, whole
    assert sorted(files(outbox)) == sorted([f"{'a' * 32}.eml", f"{'b' * 32}.eml", "index.html"])


def test_stale_temp_files_of_dead_writers_are_swept(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    channel = OutboxChannel(outbox)
    channel.send(message("a" * 32))
    stale, fresh = outbox / ".tmp-killed.eml", outbox / ".tmp-writing.eml"
    for path in (stale, fresh):
        path.write_bytes(b"From: half a message")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(stale, (two_hours_ago, two_hours_ago))
    assert channel.write_index() is not None
    assert not stale.exists() and fresh.exists()


def test_two_ticks_sharing_an_outbox_never_trip_over_each_other(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    errors: list[BaseException] = []
    per_writer = 150

    def tick(name: str) -> None:
        channel = OutboxChannel(outbox)
        try:
            for i in range(per_writer):
                channel.send(message(f"{name}{i:031d}"))
                if i % 5 == 0:
                    channel.write_index()
            channel.write_index()
        except BaseException as exc:  # the test reports whatever a writer raised
            errors.append(exc)

    writers = [threading.Thread(target=tick, args=(name,)) for name in "xy"]
    for w in writers:
        w.start()
    for w in writers:
        w.join()
    assert errors == []
    index = OutboxChannel(outbox).write_index()
    assert index is not None
    assert f"Outbox: {2 * per_writer} messages" in index.read_text(encoding="utf-8")
    assert not [name for name in files(outbox) if name.startswith(".tmp-")]
