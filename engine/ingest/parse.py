"""Reading import files as a stream of (line, row) pairs: CSV with a header line, or JSON lines;
either gzipped when the name ends in .gz.

A file that cannot be read as a whole — missing, binary, not UTF-8, a line too long, JSON lines
given as CSV — raises FileProblem naming the file and line; a row that is merely bad is the
loader's business. Rows are read one at a time, so memory does not grow with the file."""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# A longer line is refused rather than read: one 2 GB line must not take 2 GB.
MAX_LINE = 1 << 20
# Bytes read at a time (a partial line is carried to the next read).
_BLOCK = 1 << 20
FORMATS = ("csv", "jsonl")
RawRow = dict[str, Any]
_Binary = gzip.GzipFile | io.BufferedReader
# A row that could not even be split into columns: its only key is ROW_ERROR, the message.
ROW_ERROR = ""


class FileProblem(Exception):
    """A file that cannot be read any further: `path:line: message`."""

    def __init__(self, path: str, line: int, message: str) -> None:
        # Line 0: the file as a whole (it cannot be opened, its name says no format).
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
        self.path, self.line, self.message = path, line, message


def format_of(path: Path, given: str | None) -> str:
    """The format of `path`: `given`, else from its suffix (.csv, .jsonl/.ndjson, either .gz)."""
    if given:
        return given
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    raise FileProblem(str(path), 0, "cannot tell the format from the name; say --format csv or --format jsonl")


class Position:
    """How far a reading has got, in bytes of the file as it lies on disk (for a gzipped file,
    compressed bytes): what a progress bar measures against the file's size."""

    def __init__(self) -> None:
        self.bytes = 0


def read_rows(
    path: Path,
    fmt: str | None = None,
    *,
    on_header: Callable[[list[str]], None] | None = None,
    position: Position | None = None,
) -> Iterator[tuple[int, RawRow]]:
    """Each row of `path` with the line it starts on; FileProblem when the file cannot be read.

    `on_header` hears a CSV file's column names before its first row (it may raise
    FileProblem); `position` follows the bytes read."""
    shown = str(path)
    kind = format_of(path, fmt)
    try:
        disk = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise FileProblem(shown, 0, f"cannot open: {exc.strerror or exc}") from None
    binary: _Binary = gzip.GzipFile(fileobj=disk, mode="rb") if path.name.lower().endswith(".gz") else disk
    lines = _Lines(binary, shown, position or Position(), disk if binary is not disk else None)
    try:
        # A NUL anywhere near the start: a binary file (an image, a spreadsheet), named as such
        # rather than as the encoding error its first bytes would give.
        if b"\0" in binary.peek(8192)[:8192]:
            raise FileProblem(shown, 1, "binary data (a NUL byte): not a CSV or JSON lines file")
        if kind == "csv":
            yield from _csv_rows(lines, shown, on_header)
        else:
            yield from _jsonl_rows(lines, shown)
    except (OSError, EOFError, zlib.error) as exc:  # a damaged or truncated gzip stream
        raise FileProblem(shown, lines.number, f"cannot read: {exc}") from None
    finally:
        binary.close()
        disk.close()


class _Lines:
    """The text lines of a binary stream, each at most MAX_LINE bytes, UTF-8, no NULs.

    Read a block at a time: the checks (NUL, length, UTF-8) run over a whole block of lines in
    C, and the lines come out of the decoded block, rather than costing Python work per line.
    `number` counts the lines of the blocks handed out so far; a problem found in a block is
    located by counting the newlines before it."""

    def __init__(self, stream: _Binary, path: str, position: Position, compressed: io.BufferedReader | None) -> None:
        self.stream, self.path, self.number = stream, path, 0
        self.position, self.compressed = position, compressed

    def __iter__(self) -> Iterator[str]:
        pending = b""
        first = True
        while True:
            block = self.stream.read(_BLOCK)
            # Plain files: the bytes read; gzip: where the compressed stream has got to.
            self.position.bytes = (
                self.compressed.tell() if self.compressed is not None else self.position.bytes + len(block)
            )
            data = pending + block if pending else block
            # Whole lines only, so that no line (nor character) is split between two blocks.
            cut = data.rfind(b"\n") + 1 if block else len(data)
            if not cut:
                if len(data) > MAX_LINE:
                    self._too_long(data)
                if not data:
                    return
                pending = data
                continue
            lines, pending = data[:cut], data[cut:]
            text = self._checked(lines)
            if first:
                text, first = text.removeprefix("\ufeff"), False
            yield from io.StringIO(text, newline="\n")
            self.number += lines.count(b"\n") + (0 if lines.endswith(b"\n") else 1)
            if not block:
                return

    def _checked(self, lines: bytes) -> str:
        """`lines` (whole lines) as text, or FileProblem naming the first line that is wrong."""
        if len(lines) > MAX_LINE and max(map(len, lines.split(b"\n"))) + 1 > MAX_LINE:
            self._too_long(lines)
        if b"\0" in lines:
            raise FileProblem(
                self.path,
                self._line_at(lines, lines.index(b"\0")),
                "binary data (a NUL byte): not a CSV or JSON lines file",
            )
        try:
            return lines.decode("utf-8")
        except UnicodeDecodeError as exc:
            column = exc.start - (lines.rfind(b"\n", 0, exc.start) + 1) + 1
            raise FileProblem(
                self.path,
                self._line_at(lines, exc.start),
                f"not UTF-8 text (byte {column} of the line); save the file as UTF-8",
            ) from None

    def _too_long(self, lines: bytes) -> None:
        offset = 0
        for line in lines.split(b"\n"):
            if len(line) + 1 > MAX_LINE:
                break
            offset += len(line) + 1
        raise FileProblem(
            self.path,
            self._line_at(lines, offset),
            f"line is longer than {MAX_LINE // 1024} KB; is this the right file?",
        )

    def _line_at(self, lines: bytes, offset: int) -> int:
        """The line number of byte `offset` of `lines`, the block after `self.number` lines."""
        return self.number + lines.count(b"\n", 0, offset) + 1


def _csv_rows(lines: _Lines, path: str, on_header: Callable[[list[str]], None] | None) -> Iterator[tuple[int, RawRow]]:
    reader = csv.reader(lines)
    # reader.line_num: the lines the reader has taken, so a row spanning lines starts after
    # the previous row's last one.
    try:
        header = next(reader, None)
        if header is None:
            return
        if header and header[0].lstrip().startswith(("{", "[")):
            raise FileProblem(path, 1, "this looks like JSON lines, not CSV; name it .jsonl or say --format jsonl")
        names = [name.strip() for name in header]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise FileProblem(path, 1, f"column '{name}' appears twice in the header")
            seen.add(name)
        if on_header is not None:
            on_header(names)
        width = len(names)
        start = reader.line_num + 1
        for cells in reader:
            if cells:
                if len(cells) > width:
                    yield start, {ROW_ERROR: f"{len(cells)} values but the header names {width} columns"}
                else:
                    yield start, dict(zip(names, cells, strict=False))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise FileProblem(path, reader.line_num, f"not valid CSV: {exc}") from None


def _jsonl_rows(lines: _Lines, path: str) -> Iterator[tuple[int, RawRow]]:
    for number, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, {ROW_ERROR: f"not JSON: {exc.msg} at column {exc.colno}"}
            continue
        if not isinstance(row, dict):
            yield number, {ROW_ERROR: f"a JSON {type(row).__name__} where an object was expected"}
            continue
        yield number, row
