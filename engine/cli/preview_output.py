"""What `touchflow preview` prints: a table of the rendered emails, template errors as
`file:line: error: …` lines, the notes, and where the review sheet is."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rich.table import Table

from engine.cli.common import err, out
from engine.preview import Preview, PreviewReport


def show_previews(report: PreviewReport, base: Path) -> bool:
    """Print `report`; False when an email failed to render (the command then exits 1)."""
    table = Table(title="Preview", show_lines=False)
    for col in ("step", "arm", "locale", "contact", "subject", "From"):
        table.add_column(col, overflow="fold")
    for r in report.previews:
        arm = (r.arm or "") + ("" if r.assigned else " (not theirs)")
        subject = r.subject if r.error is None else "error (below)"
        table.add_row(r.step, arm, r.locale or "default", str(r.contact_id), subject, r.sender)
    out.print(table)
    for note in report.notes:
        out.print(f"note: {note}", markup=False, soft_wrap=True)
    for r in report.previews:
        if r.error is not None:
            out.print(_error_line(r, base), markup=False, soft_wrap=True)
    out.print(f"open {report.sheet.resolve()}", markup=False, soft_wrap=True)
    failed = sum(r.error is not None for r in report.previews)
    if failed:
        err.print(f"{failed} of {len(report.previews)} emails failed to render", markup=False)
    return not failed


def _error_line(r: Preview, base: Path) -> str:
    """`file:line: error: message (step, arm, locale, contact)`: the template's own line when known."""
    where = (
        f"step {r.step}" + (f", arm {r.arm}" if r.arm else "") + f", {r.locale or 'default'}, contact {r.contact_id}"
    )
    if r.error_at is None:
        return f"error: {r.error} ({where})"
    path, line = r.error_at
    shown = Path(path)
    with contextlib.suppress(ValueError):  # outside the working directory: the full path
        shown = shown.resolve().relative_to(base.resolve())
    # The renderer's message starts with the template's name: the location says it already.
    first, _, rest = (r.error or "").partition(": ")
    message = rest if rest and first.endswith(shown.name) else r.error
    return f"{shown.as_posix()}:{line}: error: {message} ({where})"
