"""The review sheet: `index.html` with every previewed email side by side.

One table per step: experiment arms in columns, locales (and sample contacts) in rows; each cell
shows the subject and the From line above the email itself. Emails carry customer data and
author HTML, so each one is shown in an `<iframe sandbox="">` (no scripts, no forms, no
navigation, its own origin) from `srcdoc`, escaped; everything else on the page is escaped text.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

_STYLE = """
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:2em}
th,td{border:1px solid #ccc;padding:.5em;vertical-align:top;text-align:left}
.meta{font-size:12px;color:#555;margin-bottom:.4em}
.subject{font-weight:600;margin-bottom:.2em}
.error{color:#a00;white-space:pre-wrap}
.other{opacity:.6}
iframe{width:420px;height:480px;border:1px solid #ddd;background:#fff}
"""
# The sheet runs nothing: no scripts at all, frames only from srcdoc.
_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src * data:; frame-src 'self'"


class Shown(Protocol):
    """What the sheet needs of a preview (engine.preview.Preview)."""

    @property
    def step(self) -> str: ...
    @property
    def arm(self) -> str | None: ...
    @property
    def locale(self) -> str: ...
    @property
    def contact_id(self) -> int: ...
    @property
    def subject(self) -> str: ...
    @property
    def sender(self) -> str: ...
    @property
    def files(self) -> tuple[str, ...]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def assigned(self) -> bool: ...


def write_sheet(folder: Path, title: str, previews: Sequence[Shown], notes: Sequence[str]) -> Path:
    """Write `folder/index.html` for `previews` and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{_POLICY}\">",
        f"<title>Preview of {html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>Preview of {html.escape(title)}</h1>",
    ]
    parts.extend(f"<p class='meta'>{html.escape(note)}</p>" for note in notes)
    for step in dict.fromkeys(p.step for p in previews):
        parts.append(_table(folder, step, [p for p in previews if p.step == step]))
    parts.append("</body></html>")
    path = folder / "index.html"
    path.write_text("".join(parts), encoding="utf-8")
    return path


def _table(folder: Path, step: str, previews: list[Shown]) -> str:
    arms = list(dict.fromkeys(p.arm for p in previews))
    rows = list(dict.fromkeys((p.locale, p.contact_id) for p in previews))
    cells = {(p.locale, p.contact_id, p.arm): p for p in previews}
    head = "".join(f"<th scope='col'>{html.escape(arm or 'email')}</th>" for arm in arms)
    out = [f"<h2>step {html.escape(step)}</h2><table><thead><tr><th>locale</th><th>contact</th>{head}</tr></thead>"]
    out.append("<tbody>")
    for locale, contact in rows:
        out.append(f"<tr><th scope='row'>{html.escape(locale or 'default')}</th><th scope='row'>contact {contact}</th>")
        for arm in arms:
            shown = cells.get((locale, contact, arm))
            out.append(f"<td>{_cell(folder, shown)}</td>" if shown is not None else "<td></td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _cell(folder: Path, p: Shown) -> str:
    if p.error is not None:
        return f"<div class='error'>error: {html.escape(p.error)}</div>"
    email = Path(p.files[0]).read_text(encoding="utf-8")
    links = " ".join(
        f"<a href='{html.escape(Path(f).relative_to(folder).as_posix())}'>{label}</a>"
        for f, label in zip(p.files, ("html", "text"), strict=False)
    )
    whose = "" if p.assigned else " <span class='other'>(this contact's arm is another one)</span>"
    return (
        f"<div class='subject'>{html.escape(p.subject)}</div>"
        f"<div class='meta'>From: {html.escape(p.sender)}{whose} · {links}</div>"
        f'<iframe sandbox="" srcdoc="{html.escape(email, quote=True)}" title="{html.escape(p.subject)}"></iframe>'
    )
