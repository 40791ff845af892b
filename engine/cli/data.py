"""Customer data in: `touchflow import KIND FILE...` (the contract is docs/data.md)."""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from engine.cli.common import choice, err, open_store, out, parse_now
from engine.config import load_settings
from engine.ingest.load import Reject

# Bad rows shown on the terminal; the rest are counted (and all go to --rejects).
_SHOWN = 20


class ImportKind(StrEnum):
    """What the file holds."""

    accounts = "accounts"
    contacts = "contacts"
    csms = "csms"
    events = "events"
    suppressions = "suppressions"


class FileFormat(StrEnum):
    """How the file is written (default: from its name)."""

    csv = "csv"
    jsonl = "jsonl"


class OnError(StrEnum):
    """What a bad row does to the import."""

    stop = "stop"
    skip = "skip"


class _RejectsFile:
    """Bad rows written as they are found, each with its `_reason` (ignored on re-import):
    JSON lines when the name ends in .jsonl, CSV otherwise."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stream: IO[str] = path.open("w", encoding="utf-8", newline="")
        self.jsonl = path.name.endswith((".jsonl", ".ndjson"))
        self.writer: csv.DictWriter[str] | None = None

    def write(self, reject: Reject) -> None:
        row: dict[str, Any] = {**reject.row, "_reason": reject.format()}
        row.pop("", None)
        if self.jsonl:
            self.stream.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
            return
        if self.writer is None:
            self.writer = csv.DictWriter(self.stream, fieldnames=list(row), extrasaction="ignore", restval="")
            self.writer.writeheader()
        flat = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}
        self.writer.writerow(flat)

    def close(self) -> None:
        self.stream.close()


@contextmanager
def _progress(files: list[Path]) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (bytes of the files read, rows/s, ETA) when it is a terminal;
    otherwise a callback that does nothing, so piped and logged output holds only the summary."""
    if not err.is_terminal:
        yield lambda rows, done: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    total = sum(path.stat().st_size for path in files if path.is_file())
    bar = Progress(
        TextColumn("importing"),
        BarColumn(),
        TextColumn("{task.fields[rows]:,} rows · {task.fields[rate]:,.0f} rows/s"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    task = bar.add_task("import", total=total or None, rows=0, rate=0.0)
    started = time.perf_counter()

    def update(rows: int, done: int) -> None:
        rate = rows / max(time.perf_counter() - started, 1e-6)
        bar.update(task, completed=done, rows=rows, rate=rate)

    with bar:
        yield update


def import_data(
    kind: Annotated[
        ImportKind,
        typer.Argument(
            parser=choice(ImportKind, "KIND"),
            metavar="KIND",
            help="What the files hold: " + ", ".join(k.value for k in ImportKind) + ".",
        ),
    ],
    files: Annotated[
        list[Path], typer.Argument(metavar="FILE", help="CSV or JSON lines files, gzipped when named .gz.")
    ],
    file_format: Annotated[
        FileFormat | None,
        typer.Option(
            "--format", parser=choice(FileFormat, "--format"), help="The files' format (default: from their names)."
        ),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check and count; write nothing.")] = False,
    on_error: Annotated[
        OnError,
        typer.Option(
            "--on-error",
            parser=choice(OnError, "--on-error"),
            help="stop: a bad row writes nothing; skip: write the good rows.",
        ),
    ] = OnError.stop,
    rejects: Annotated[
        Path | None, typer.Option("--rejects", help="Write every bad row here, with its reason.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Import customer data: rows keyed by the customer's own ids, so a second import changes nothing.

    Exits 1 when a file cannot be read, or when rows were rejected under --on-error stop."""
    from engine.ingest.load import import_files
    from engine.ingest.parse import FileProblem

    settings = load_settings()
    engine = open_store(settings.database_url, create=True)
    shown = 0
    writer = _RejectsFile(rejects) if rejects else None

    def on_reject(reject: Reject) -> None:
        nonlocal shown
        if writer:
            writer.write(reject)
        if shown < _SHOWN:
            err.print(reject.format(), markup=False, soft_wrap=True)
        shown += 1

    try:
        with _progress(files) as on_progress:
            summary = import_files(
                engine,
                kind.value,
                files,
                fmt=file_format.value if file_format else None,
                on_error=on_error.value,
                dry_run=dry_run,
                on_reject=on_reject,
                on_progress=on_progress,
                now=parse_now(None),
            )
    except FileProblem as exc:
        err.print(f"{exc}; nothing imported", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    finally:
        if writer:
            writer.close()
        engine.dispose()
    if shown > _SHOWN:
        err.print(f"… and {shown - _SHOWN} more rejected rows", markup=False)
    if as_json:
        out.print(json.dumps(summary.as_dict()), markup=False, soft_wrap=True)
    else:
        verb = "would be" if dry_run else ("" if summary.written else "nothing written:")
        out.print(
            f"{kind.value}: {verb + ' ' if verb else ''}{summary.inserted} inserted, {summary.updated} updated, "
            f"{summary.unchanged} unchanged, {summary.rejected} rejected in {summary.seconds:.1f} s",
            markup=False,
        )
    if summary.rejected and on_error is OnError.stop:
        raise typer.Exit(1)
