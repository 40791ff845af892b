"""A plain-text alternative generated from the HTML body."""

from __future__ import annotations

import html
import re

_BLOCKS = frozenset({"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "li", "table", "hr"})
# The markup is a template's output, so possibly hostile: no expression may scan past a `<`
# looking for its `>` (or backtrack). Otherwise every start of an unterminated `<a<a<a…` scans
# to the end of the text, quadratic in one C call (40 kB took 14 s) that no deadline interrupts.
# Whole elements whose content is not text: removed in one C-level pass (unclosed: to the end).
# (Its content is walked a run of non-`<` at a time, not a character at a time: C-speed on a
# stylesheet.)
_HIDDEN = re.compile(r"<(head|title|style|script)\b[^<>]*+(?<!/)>[^<]*+(?:<(?!/\1\s*>)[^<]*+)*+(?:</\1\s*>|\Z)", re.I)
_COMMENTS = re.compile(r"<!--.*?(?:-->|\Z)|<![^<>]*+>|<\?[^<>]*+>", re.S)
_TAG = re.compile(r"""<(/?)([a-zA-Z][a-zA-Z0-9]*+)((?:[^<>"']++|"[^"]*+"|'[^']*+')*+)>""")
_HREF = re.compile(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", re.I)
_BLANK_LINES = re.compile(r"\n{3,}")
_BREAK = "\x00"  # a line break from a tag, kept apart from the text's own whitespace


def html_to_text(markup: str) -> str:
    """Readable text of an HTML email: paragraphs kept, links as 'text (url)'.

    Regular expressions do the walking (a Python call per tag, none per character or text run):
    this runs once per message, on the dispatch's critical path.
    """
    href: list[str | None] = [None]

    def tag(match: re.Match[str]) -> str:
        closing, name, attrs = match.groups()
        name = name.lower()
        out = ""
        if not closing:
            if name in _BLOCKS:
                out = _BREAK + "- " if name == "li" else _BREAK
            if name == "a":
                found = _HREF.search(attrs)
                href[0] = next(g for g in found.groups() if g is not None) if found else None
            if not attrs.endswith("/"):
                return out
        # an end tag, or the end half of <br/>
        if name in _BLOCKS and name != "li":
            out += _BREAK
        if name == "a" and href[0]:
            out += f" ({href[0]})"
            href[0] = None
        return out

    text = _COMMENTS.sub("", _HIDDEN.sub("", markup.replace(_BREAK, "")))
    # Tags become break markers first; entities are decoded after (so `&lt;p&gt;` stays text) and
    # only then is whitespace collapsed, as a browser would (`&nbsp;` included).
    # (split() and `\s` agree on what is a space; split() is several times faster than a regex.)
    text = " ".join(html.unescape(_TAG.sub(tag, text)).split()).replace(_BREAK, "\n")
    lines = [line.strip() for line in text.splitlines()]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"
