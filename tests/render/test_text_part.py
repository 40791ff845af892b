"""The plain-text part: written (`{% block text %}`) or generated from the HTML.

The generator is a regular-expression walk (it runs once per message on dispatch's critical
path); the first, html.parser-based version is kept in `reference_text.py` as its oracle.
"""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.render import EmailRenderer
from engine.render.text import html_to_text
from tests.render.reference_text import html_to_text as reference

CONTEXT = {"account": {"name": "Acme & Co"}, "contact": {"name": "Kim"}, "unsubscribe_url": "https://x/u?k=1&t=2"}


def write(root: Path, name: str, text: str) -> None:
    (root / name).write_text(text, encoding="utf-8")


def test_a_written_text_block_is_the_text_part_and_stays_out_of_the_html(tmp_path: Path) -> None:
    write(tmp_path, "_layout.html", "<html><body>{% block content %}{% endblock %}</body></html>")
    write(
        tmp_path,
        "hello.html",
        '{% extends "_layout.html" %}{% block subject %}Hi{% endblock %}'
        "{% block content %}<p>Hello {{ contact.name }} of {{ account.name }}</p>{% endblock %}"
        "{% block text %}\nHello {{ contact.name }} of {{ account.name }}.\nUnsubscribe: {{ unsubscribe_url }}\n"
        "{% endblock %}",
    )
    rendered = EmailRenderer(tmp_path).render("hello", [""], CONTEXT)
    assert rendered.text == "Hello Kim of Acme & Co.\nUnsubscribe: https://x/u?k=1&t=2\n"
    assert "Unsubscribe:" not in rendered.html and "Acme &amp; Co" in rendered.html


def test_without_a_text_block_the_text_part_is_generated(tmp_path: Path) -> None:
    write(tmp_path, "_layout.html", "<html><body>{% block content %}{% endblock %}</body></html>")
    write(
        tmp_path,
        "hello.html",
        '{% extends "_layout.html" %}{% block subject %}Hi{% endblock %}{% block content %}'
        '<p>Hello {{ contact.name }}</p><p><a href="{{ unsubscribe_url }}">Unsubscribe</a></p>{% endblock %}',
    )
    rendered = EmailRenderer(tmp_path).render("hello", [""], CONTEXT)
    assert rendered.text == "Hello Kim\n\nUnsubscribe (https://x/u?k=1&t=2)\n"


def same_text(markup: str) -> bool:
    """The generator's text equals the reference's, up to runs of spaces inside a line (the reference
    collapsed whitespace per text run, so `<li>&nbsp;x` gave two spaces after the dash)."""

    def norm(text: str) -> str:
        return re.sub(r" {2,}", " ", text)

    return norm(html_to_text(markup)) == norm(reference(markup))


def test_every_project_template_gives_the_reference_text() -> None:
    renderer = EmailRenderer(Path(__file__).resolve().parents[2] / "templates" / "email")
    for path in sorted(renderer.templates_dir.rglob("*.html")):
        source = path.read_text(encoding="utf-8")
        assert same_text(source), path.name


TAGS = st.sampled_from(["p", "div", "br", "li", "ul", "a", "b", "table", "tr", "td", "h1", "span"])
# Elements whose content is hidden come whole and hold text only: the reference still printed
# the line breaks of block tags inside them, and an unclosed <head> hides the rest here.
HIDDEN = st.builds(
    lambda tag, inner: f"<{tag}>{inner}</{tag}>",
    st.sampled_from(["style", "script", "head", "title"]),
    st.sampled_from(["p { color: red }", "a < b && c", "x = 1;", ""]),
)
PIECES = st.one_of(
    HIDDEN,
    st.builds(lambda t: f"<{t}>", TAGS),
    st.builds(lambda t: f"</{t}>", TAGS),
    st.builds(lambda t: f"<{t}/>", TAGS),
    st.builds(lambda h: f'<a href="{h}">', st.sampled_from(["https://x/?a=1&amp;b=2", "", "/p q"])),
    st.sampled_from(["&amp;", "&lt;", "&#65;", "&nbsp;", "<!-- c -->", "\n", "  ", "\t", "<!doctype html>"]),
    st.text(alphabet=st.characters(blacklist_characters="<&\x00", blacklist_categories=("Cs",)), max_size=8),
)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.lists(PIECES, max_size=30).map("".join))
def test_generated_text_matches_the_reference_on_random_markup(markup: str) -> None:
    assert same_text(markup)


def test_an_arm_subject_replaces_the_title_too(tmp_path: Path) -> None:
    write(tmp_path, "_layout.html", "<html><head><title>{% block subject %}{% endblock %}</title></head>"
          "<body>{% block content %}{% endblock %}</body></html>")  # fmt: skip
    write(tmp_path, "hello.html", '{% extends "_layout.html" %}{% block subject %}Old{% endblock %}'
          "{% block content %}<p>Hi</p>{% endblock %}")  # fmt: skip
    rendered = EmailRenderer(tmp_path).render("hello", [""], CONTEXT, subject=r"{{ account.name }} \1 <new>")
    assert rendered.subject == r"Acme & Co \1 <new>"
    assert r"<title>Acme &amp; Co \1 &lt;new&gt;</title>" in rendered.html and "Old" not in rendered.html
