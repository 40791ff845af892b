"""Control characters in text bound for an email header: found, named and shown without writing
them (an error message or an audit line must not carry the characters it complains about)."""

from __future__ import annotations

import re

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
"""C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates (which
JSON can carry but no encoding can write): never in a header value. (Every character
`str.splitlines` breaks on is one of them.)"""

_NAMES = {0x00: "NUL", 0x09: "TAB", 0x0A: "LF", 0x0D: "CR", 0x7F: "DEL", 0x85: "NEL"}
_NAMES |= {0x2028: "LINE SEPARATOR", 0x2029: "PARAGRAPH SEPARATOR"}


def describe(char: str) -> str:
    """`U+000D (CR)`: a control character, named for an audit line."""
    name = _NAMES.get(ord(char)) or ("LONE SURROGATE" if 0xD800 <= ord(char) <= 0xDFFF else None)
    return f"U+{ord(char):04X}" + (f" ({name})" if name else "")


def shown(value: str, limit: int = 80) -> str:
    """`value` in quotes for a message: control characters escaped (`\\u000d`), long values cut."""
    escaped = CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", value)
    return "'" + (escaped if len(escaped) <= limit else escaped[: limit - 1] + "…") + "'"


def control_problem(value: str) -> str | None:
    """What is wrong with `value` as header text (its first control character), or None."""
    found = CONTROL.search(value)
    if found is None:
        return None
    return f"contains the control character {describe(found.group())} at position {found.start()}"
