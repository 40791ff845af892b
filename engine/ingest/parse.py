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
    """The text lines of a binary stream, counted, each at most MAX_LINE bytes, UTF-8, no NULs."""

    def __init__(self, stream: _Binary, path: str, position: Position, compressed: io.BufferedReader | None) -> None:
        self.stream, self.path, self.number = stream, path, 0
        self.position, self.compressed = position, compressed

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        raw = self.stream.readline(MAX_LINE + 1)
        if not raw:
            if self.compressed is not None:
                self.position.bytes = self.compressed.tell()
            raise StopIteration
        self.number += 1
        # Plain files: the line's length; gzip: where the compressed stream has got to.
        if self.compressed is None:
            self.position.bytes += len(raw)
        elif self.number % 256 == 0:
            self.position.bytes = self.compressed.tell()
        if len(raw) > MAX_LINE:
            raise FileProblem(
                self.path, self.number, f"line is longer than {MAX_LINE // 1024} KB; is this the right file?"
            )
        if b"\0" in raw:
            raise FileProblem(self.path, self.number, "binary data (a NUL byte): not a CSV or JSON lines file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FileProblem(
                self.path, self.number, f"not UTF-8 text (byte {exc.start + 1} of the line); save the file as UTF-8"
            ) from None
        return text.removeprefix("\ufeff") if self.number == 1 else text


def _csv_rows(lines: _Lines, path: str, on_header: Callable[[list[str]], None] | None) -> Iterator[tuple[int, RawRow]]:
    reader = csv.reader(lines)
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
        start = lines.number + 1
        for cells in reader:
            if cells:
                if len(cells) > len(names):
                    yield start, {ROW_ERROR: f"{len(cells)} values but the header names {len(names)} columns"}
                else:
                    yield start, dict(zip(names, cells, strict=False))
            start = lines.number + 1
    except csv.Error as exc:
        raise FileProblem(path, lines.number, f"not valid CSV: {exc}") from None


def _jsonl_rows(lines: _Lines, path: str) -> Iterator[tuple[int, RawRow]]:
    for text in lines:
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield lines.number, {ROW_ERROR: f"not JSON: {exc.msg} at column {exc.colno}"}
            continue
        if not isinstance(row, dict):
            yield lines.number, {ROW_ERROR: f"a JSON {type(row).__name__} where an object was expected"}
            continue
        yield lines.number, row
