"""Checks shown beside a rendered email: an unsubscribe link, images without alt text, links that
are not http(s), and a size over Gmail's clipping limit (102 KB of HTML)."""

from __future__ import annotations

from html.parser import HTMLParser

GMAIL_CLIP_BYTES = 102 * 1024


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.images_without_alt: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "a" and values.get("href") is not None:
            self.links.append((values["href"] or "").strip())
        if tag == "img" and not (values.get("alt") or "").strip():
            self.images_without_alt.append(values.get("src") or "(no src)")


def email_checks(html: str) -> list[tuple[bool, str]]:
    """(passed, what) for each check of one rendered email's HTML part."""
    scan = _Scan()
    scan.feed(html)
    size = len(html.encode("utf-8"))
    odd = [link for link in scan.links if not link.lower().startswith(("http://", "https://"))]
    unsubscribe = any("unsubscribe" in link.lower() for link in scan.links)
    return [
        (unsubscribe, "unsubscribe link present" if unsubscribe else "no unsubscribe link"),
        (
            not scan.images_without_alt,
            "every image has alt text"
            if not scan.images_without_alt
            else f"{len(scan.images_without_alt)} image(s) without alt text: {', '.join(scan.images_without_alt[:3])}",
        ),
        (not odd, "every link is http(s)" if not odd else f"links that are not http(s): {', '.join(odd[:3])}"),
        (
            size <= GMAIL_CLIP_BYTES,
            f"{size / 1024:.1f} KB of HTML" + ("" if size <= GMAIL_CLIP_BYTES else ": over 102 KB, Gmail clips it"),
        ),
    ]
