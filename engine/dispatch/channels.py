"""Email channels behind one small Protocol. The outbox writes .eml files any mail client opens."""

from __future__ import annotations

import contextlib
import email.policy
import errno
import html
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesHeaderParser, BytesParser
from email.utils import format_datetime, parsedate_to_datetime
from functools import cached_property
from pathlib import Path
from typing import Protocol

from engine.dispatch.headers import Field, HeaderValues, build_message, header_values, message_id
from engine.render import RenderedEmail


@dataclass(frozen=True)
class OutgoingEmail:
    """A rendered email addressed to one contact, with the ledger's send key."""

    send_key: str
    sender_name: str
    sender_email: str
    to_name: str
    to_email: str
    rendered: RenderedEmail
    playbook_id: str
    step_id: str
    at: datetime
    variant: str | None = None
    unsubscribe_url: str | None = None
    """The signed link; also sent as List-Unsubscribe with one-click (RFC 8058)."""

    def __post_init__(self) -> None:
        # Checked when built: an unsafe header value fails this message before anything is sent.
        self.header_values  # noqa: B018

    @cached_property
    def header_values(self) -> HeaderValues:
        """What every channel writes in this message's headers, checked, names cleaned (or HeaderError)."""
        tags = [
            ("X-Touchflow-Send-Key", self.send_key),
            ("X-Touchflow-Playbook", self.playbook_id),
            ("X-Touchflow-Step", self.step_id),
        ]
        sender, recipient = (self.sender_name, self.sender_email), (self.to_name, self.to_email)
        return header_values(sender, recipient, self.rendered.subject, self.unsubscribe_url or None, tags)

    def list_unsubscribe_headers(self) -> dict[str, str]:
        """List-Unsubscribe headers: mail clients show an unsubscribe button and may POST to it."""
        url = self.header_values.unsubscribe_url
        if not url:
            return {}
        return {"List-Unsubscribe": f"<{url}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

    def to_mime(self) -> EmailMessage:
        """A multipart/alternative message (text, then HTML) with Touchflow's tracing headers. Every
        header is written by `engine.dispatch.headers` and the message is read back as a mail client
        reads it before it is returned: HeaderError (that message fails) if anything differs."""
        values = self.header_values
        fields = [
            Field("From", values.sender_name, "address", values.sender_email),
            Field("To", values.to_name, "address", values.to_email),
            Field("Subject", values.subject),
            Field("Date", format_datetime(self.at.replace(tzinfo=UTC)), "literal"),
            Field("Message-ID", message_id(self.send_key), "literal"),
            *(Field(name, value) for name, value in values.tags),
            *(Field(name, value, "literal") for name, value in self.list_unsubscribe_headers().items()),
        ]
        return build_message(fields, self.rendered.text, self.rendered.html)


class SendError(Exception):
    """A channel's failure, classified for the ledger.

    `retry`: nothing was delivered (429, 5xx, no connection): send again later.
    `permanent`: the provider refused this message (other 4xx): fail it with the reason.
    `ambiguous`: the request may have gone out (timeout, dropped connection): never resend;
    the row becomes `unknown` and is reconciled from provider events.
    `unavailable` (`ChannelUnavailable`): the channel's own storage refused it, nothing was
    written: retried at a capped backoff for as long as that lasts, never failed for it.
    """

    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class EmailChannel(Protocol):
    """Delivers one email; returns the provider's message id. Raises SendError (or OSError)."""

    name: str

    def send(self, email: OutgoingEmail) -> str: ...


class ChannelUnavailable(SendError):
    """Nothing was delivered and the message is not at fault: the channel's own storage or
    service cannot take it now (the outbox's disk is full or read-only). Kind `unavailable`:
    the row goes back to `planned` with a capped backoff at every dispatch, never `failed`."""

    def __init__(self, message: str) -> None:
        super().__init__("unavailable", message)


TEMP_PREFIX = ".tmp-"
"""Files being written carry this prefix (hidden, no `.eml` suffix): never a message."""

STALE_TEMP_S = 3600.0
"""A temp file untouched this long belongs to a writer that died (kill -9 mid-write): swept."""

_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


class OutboxChannel:
    """The default channel: one `<send_key>.eml` per message under the outbox directory.

    A message is written to a hidden temp file, flushed to disk, then renamed over its name, so a
    file under its final name is a whole message, a retry after a crash rewrites the same file
    instead of adding a second one, and reconciliation can take the disk's word for what was sent
    (`committed`). A storage error before the rename provably wrote nothing, whatever its errno
    (a full, read-only or unwritable disk, a quota): it raises `ChannelUnavailable`, so the row is
    retried later instead of failed, and the temp file is removed.
    """

    name = "outbox"

    def __init__(self, directory: Path, clock: Callable[[], float] = time.time) -> None:
        """`clock` (unix seconds, compared with file times) ages the temp files the sweep removes."""
        self.directory = directory
        self.clock = clock

    def path_of(self, send_key: str) -> Path:
        """Where the message of `send_key` is committed; SendError for a key that is not a plain
        file name (it would escape the outbox or hide as a dotfile)."""
        if not _PLAIN_NAME.fullmatch(send_key):
            raise SendError("permanent", f"outbox: send key {send_key!r} is not a plain file name")
        return self.directory / f"{send_key}.eml"

    def send(self, email: OutgoingEmail) -> str:
        """Commit the message as `<send_key>.eml`; returns its Message-ID."""
        target = self.path_of(email.send_key)
        msg = email.to_mime()
        self._commit(target, msg.as_bytes())
        return str(msg["Message-ID"])

    def committed(self, send_key: str) -> str | None:
        """The Message-ID of `send_key`'s message when its file is in the outbox, whole and its
        own (parsed: the send key matches, no truncated part); None otherwise."""
        try:
            data = self.path_of(send_key).read_bytes()
        except (OSError, SendError):
            return None
        msg = BytesParser(policy=email.policy.default).parsebytes(data)
        if msg["X-Touchflow-Send-Key"] != send_key or not msg["Message-ID"]:
            return None
        if any(part.defects for part in msg.walk()):
            return None
        return str(msg["Message-ID"])

    def write_index(self) -> Path | None:
        """`index.html` listing every committed message, newest first, linking each .eml, written
        atomically (another tick reading or writing the outbox sees the old page or the new one).

        Only `<name>.eml` files count: temp files of writes in flight are skipped, and a file that
        vanishes between the listing and its reading is left out. Returns None when the disk
        refuses the page: the last index stays whole, and the next tick writes it again.
        Also removes temp files left by writers that died mid-write.
        """
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            entries = self._entries()
        except OSError:
            return None
        entries.sort(key=lambda e: e[0], reverse=True)
        rows = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(value)}</td>" for value in fields)
            + f"<td><a href='{html.escape(name)}'>open</a></td></tr>"
            for _, name, fields in entries
        )
        page = (
            "<!doctype html><meta charset='utf-8'><title>Touchflow outbox</title>"
            f"<h1>Outbox: {len(entries)} messages</h1><table border=1 cellpadding=4>"
            "<tr><th>date</th><th>playbook</th><th>to</th><th>subject</th><th></th></tr>"
            f"{rows}</table>"
        )
        index = self.directory / "index.html"
        try:
            self._commit(index, page.encode("utf-8"))
        except ChannelUnavailable:
            return None
        self._sweep()
        return index

    def _entries(self) -> list[tuple[datetime, str, list[str]]]:
        """(date, file name, [date, playbook, to, subject]) of each committed message."""
        parser = BytesHeaderParser(policy=email.policy.default)
        entries = []
        with os.scandir(self.directory) as listing:
            names = [e.name for e in listing if e.name.endswith(".eml") and not e.name.startswith(".")]
        for name in names:
            try:
                with open(self.directory / name, "rb") as fh:
                    headers = parser.parse(fh)
            except OSError:
                continue  # removed or replaced by a directory since the listing: not a message now
            try:
                fields = [str(headers[k] or "") for k in ("Date", "X-Touchflow-Playbook", "To", "Subject")]
            except Exception:  # a hand-made file the email package cannot read: listed, blank
                fields = ["", "", "", ""]
            entries.append((_sent_at(fields[0]), name, fields))
        return entries

    def _commit(self, target: Path, data: bytes) -> None:
        """Write `data` as `target` atomically and durably: temp file, fsync, rename, fsync of the
        directory. Raises ChannelUnavailable when the disk refuses; `target` is then untouched
        (a failed rename leaves the old name as it was) and the temp file is gone."""
        tmp: str | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=TEMP_PREFIX)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)  # the bytes reach the disk before the name does
            finally:
                os.close(fd)
            os.replace(tmp, target)
        except OSError as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
            code = errno.errorcode.get(exc.errno or 0, "OSError")
            raise ChannelUnavailable(
                f"outbox {self.directory}: cannot write {target.name} ({code}: {exc.strerror or exc})"
            ) from exc
        try:  # the rename is durable once the directory is; some filesystems refuse (EINVAL)
            dir_fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass

    def _sweep(self) -> None:
        """Remove temp files older than STALE_TEMP_S: a writer killed mid-write left them. Newer
        ones may be another tick's write in flight, so they stay."""
        cutoff = self.clock() - STALE_TEMP_S
        with contextlib.suppress(OSError), os.scandir(self.directory) as listing:
            for entry in listing:
                if entry.name.startswith(TEMP_PREFIX):
                    with contextlib.suppress(OSError):
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            os.unlink(entry.path)


def _sent_at(value: str) -> datetime:
    """A Date header as an aware datetime for sorting; the oldest possible when unreadable."""
    try:
        at = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return datetime.min.replace(tzinfo=UTC)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


class NullChannel:
    """Renders but delivers nothing (dry runs, simulations); keeps nothing, so memory stays flat."""

    name = "dry-run"

    def send(self, email: OutgoingEmail) -> str:
        return f"dry-run:{email.send_key}"
