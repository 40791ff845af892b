"""Templates are untrusted: a template that would run for ever or build gigabytes fails its own
message, fast, with the reason; a normal template renders exactly as plain Jinja renders it."""

from __future__ import annotations

import html
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import css_inline
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import FileSystemLoader, StrictUndefined, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from engine.render import EmailRenderer, RenderError, inline_template_error, render_inline
from engine.render.email import style_characters
from engine.render.limits import RenderLimits
from engine.render.templates import template_problems

REPO_TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "email"
CONTEXT: dict[str, Any] = {
    "account": {
        "id": 7,
        "name": "Acme & Co",
        "plan": "growth",
        "locale": "en",
        "contract_start": date(2025, 1, 1),
        "renewal_date": date(2026, 3, 1),
    },
    "contact": {"name": "Kim", "locale": "en"},
    "csm": {"name": "Mina Park", "email": "mina@x.example"},
    "sender": {"name": "Mina Park", "email": "mina@x.example"},
    "playbook": {"id": "p", "name": "P"},
    "step": {"id": "s"},
    "unsubscribe_url": "https://x/u?k=1&t=2",
}
FAST = 10.0  # seconds: every hostile template must fail well before this


@contextmanager
def fails_within(seconds: float = FAST) -> Iterator[None]:
    """Interrupts a render still running after `seconds` (so a regression fails instead of hanging)."""

    def stop(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still rendering after {seconds} s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < seconds


# Each one: the template expression or statement, and what the failure must say.
HOSTILE = {
    "nested ranges": (
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        "iterations",
    ),
    "string repetition": ("{{ 'a' * 50000000 }}", "50,000,000 characters"),
    "list repetition": ("{{ ([1, 2] * 5000000)|length }}", "10,000,000 items"),
    "power": ("{{ (7 ** 10000000) % 10 }}", "bits"),
    "macro recursion": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}",
        "render exceeded 2 s",
    ),
    "loop over a huge string": ("{% for c in 'abcd' * 1000000 %}{{ c }}{% endfor %}", "iterations"),
    "concatenation doubling": (
        "{% set ns = namespace(s='ab') %}{% for i in range(26) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}",
        "characters",
    ),
    "huge output": ("{% for i in range(100000) %}{{ 'x' * 100 }}{% endfor %}", "output over 5,000,000 characters"),
    "padding": ("{{ 'a'|center(100000000) }}", "100,000,000"),
    "format width": ("{{ '%0100000000d' % 1 }}", "100,000,000"),
}


def email_files(root: Path, where: str, hostile: str) -> None:
    """A layout and template `t` with `hostile` in the body, the subject block or the text block."""
    (root / "_layout.html").write_text(
        "<html><head><title>{% block subject %}{% endblock %}</title></head>"
        "<body>{% block content %}{% endblock %}</body></html>",
        encoding="utf-8",
    )
    blocks = {"subject": "Hello {{ account.name }}", "content": "<p>Hi {{ contact.name }}</p>", "text": "Hi"}
    blocks[where] = hostile
    body = "".join(f"{{% block {name} %}}{text}{{% endblock %}}" for name, text in blocks.items())
    (root / "t.html").write_text('{% extends "_layout.html" %}' + body, encoding="utf-8")


def render_hostile(tmp_path: Path, where: str, hostile: str) -> None:
    if where == "inline":
        render_inline(hostile, CONTEXT)
    elif where == "arm subject":
        email_files(tmp_path, "content", "<p>Hi</p>")
        EmailRenderer(tmp_path).render("t", [""], CONTEXT, subject=hostile)
    else:
        email_files(tmp_path, where, hostile)
        EmailRenderer(tmp_path).render("t", [""], CONTEXT)


@pytest.mark.parametrize("where", ["content", "subject", "text", "inline", "arm subject"])
@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_template_fails_fast_with_its_reason(tmp_path: Path, case: str, where: str) -> None:
    hostile, reason = HOSTILE[case]
    with fails_within(), pytest.raises(RenderError) as failure:
        render_hostile(tmp_path, where, hostile)
    assert reason in str(failure.value)
    assert "Traceback" not in str(failure.value)


# Operations that multiply a size in one C call (no deadline can interrupt it): refused before.
AMPLIFIERS = {
    "format() width": "{{ '{:>100000000}'.format(1) }}",
    "format() of one big field many times": "{{ ('{0}' * 20).format('a' * 1000000) }}",
    "printf of big values": "{% set s = 'a' * 4000000 %}{{ '%s%s' % (s, s) }}",
    "to_bytes": "{{ (1).to_bytes(100000000, 'big') }}",
    "replace()": "{{ ('x' * 1000000).replace('x', 'yyyyyyyyyy') }}",
    "replace filter": "{{ ('x' * 1000000)|replace('x', 'yyyyyyyyyy') }}",
    "join filter": "{{ ('ab' * 1000)|join('-' * 10000) }}",
    "join()": "{{ ('-' * 10000).join(['a'] * 1000) }}",
    "expandtabs": "{{ ('\t' * 1000000).expandtabs(100) }}",
    "indent": "{{ ('a\n' * 1000000)|indent('x' * 100) }}",
    "wordwrap": "{{ ('x' * 2000000)|wordwrap(1, wrapstring='-' * 100) }}",
    "batch fill": "{{ [1]|batch(100000000, 0)|list|length }}",
    "tojson indent": "{{ [[1, 2]]|tojson(indent=1000) }}",
    "printing a list of one big string": "{% set s = 'a' * 1000000 %}{{ [s, s, s, s, s, s] }}",
    "repeating a list of one big string": "{{ ['a' * 1000000] * 100 }}",
    "quadratic sum": "{{ ([[1]] * 60000)|sum(start=[])|length }}",
    "concatenation": "{{ ('a' * 4000000) ~ ('a' * 4000000) }}",
    "range": "{{ range(1000000)|length }}",
}


@pytest.mark.parametrize("case", sorted(AMPLIFIERS))
def test_size_amplifiers_are_refused_before_they_run(case: str) -> None:
    start = time.monotonic()
    with fails_within(), pytest.raises(RenderError, match=r"over the limit of [\d,]+"):
        render_inline(AMPLIFIERS[case], CONTEXT)
    assert time.monotonic() - start < 2.0  # refused, not interrupted at the deadline


def test_hostile_format_strings_are_measured_in_linear_time() -> None:
    with fails_within(5), pytest.raises(RenderError, match="format key"):
        render_inline("{{ ('%(' * 2000000) % {} }}", CONTEXT)
    with fails_within(5):
        assert render_inline("{{ ('%' + ' ' * 4000000 + 'd') % 1 }}", CONTEXT) == " 1"


def test_sizes_at_the_limits_still_render() -> None:
    assert render_inline("{{ range(100000)|length }} {{ ('a' * 5000000)|length }}", CONTEXT) == "100000 5000000"
    assert render_inline("{{ ([1] * 5000000)|length }} {{ (2 ** 99000) % 7 }}", CONTEXT) == f"5000000 {2**99000 % 7}"


def test_the_deadline_stops_work_no_other_limit_sees(tmp_path: Path) -> None:
    """Filters iterate inside Jinja, out of reach of the loop budget: only the clock stops them."""
    email_files(
        tmp_path, "content", "{% for i in range(1000) %}{{ ('ab' * 2000000)|list|unique|list|length }}{% endfor %}"
    )
    limits = RenderLimits(seconds=0.5)
    start = time.monotonic()
    with fails_within(), pytest.raises(RenderError, match=r"render exceeded 0.5 s"):
        EmailRenderer(tmp_path, limits=limits).render("t", [""], CONTEXT)
    assert time.monotonic() - start < 2.0


def test_limits_are_configurable(tmp_path: Path) -> None:
    email_files(tmp_path, "content", "{% for i in range(50) %}{{ i }}{% endfor %}{{ 'a' * 200 }}")
    assert EmailRenderer(tmp_path).render("t", [""], CONTEXT).html.endswith("a" * 200 + "</body></html>")
    with pytest.raises(RenderError, match="iterations"):
        EmailRenderer(tmp_path, limits=RenderLimits(iterations=10)).render("t", [""], CONTEXT)
    with pytest.raises(RenderError, match="100 characters"):
        EmailRenderer(tmp_path, limits=RenderLimits(value=100)).render("t", [""], CONTEXT)
    with pytest.raises(RenderError, match="output over 150 characters"):
        EmailRenderer(tmp_path, limits=RenderLimits(output=150)).render("t", [""], CONTEXT)
    with pytest.raises(RenderError, match="iterations"):
        render_inline("{% for i in range(50) %}{{ i }}{% endfor %}", CONTEXT, limits=RenderLimits(iterations=10))


def test_normal_numbers_and_text_still_work() -> None:
    """The value limits are about size: big but ordinary numbers and short repetitions pass."""
    source = (
        "{{ 12000000 * 3 }} {{ 2 ** 64 }} {{ '-' * 20 }} {{ [0] * 3 }} {{ '%08.2f' % 3.5 }} {{ '{:>6}'.format('x') }}"
    )
    assert render_inline(source, CONTEXT) == f"36000000 {2**64} {'-' * 20} [0, 0, 0] 00003.50      x"
    padded = render_inline("{{ account.name|center(12) }}|{{ 'a b c'|replace(' ', '--') }}", CONTEXT)
    assert padded == "Acme & Co".center(12) + "|a--b--c"


def test_project_templates_render_exactly_as_plain_jinja() -> None:
    """The oracle: an unbounded sandbox rendering the same files, through the same CSS inliner."""
    plain = ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(REPO_TEMPLATES)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"], default_for_string=True),
    )
    inliner = css_inline.CSSInliner()
    renderer = EmailRenderer(REPO_TEMPLATES)
    files = sorted(p.relative_to(REPO_TEMPLATES).as_posix() for p in REPO_TEMPLATES.rglob("*.*.html"))
    assert len(files) >= 20
    for filename in files:
        name, locale, _ = filename.rsplit(".", 2)
        rendered = renderer.render(name, [locale], CONTEXT)
        template = plain.get_template(filename)
        expected_subject = "".join(template.blocks["subject"](template.new_context(CONTEXT))).strip()
        assert rendered.html == inliner.inline(template.render(CONTEXT)), filename
        assert rendered.subject == html.unescape(expected_subject), filename


def test_renders_in_many_threads_stop_only_the_hostile_ones(tmp_path: Path) -> None:
    (tmp_path / "_layout.html").write_text("<html><body>{% block content %}{% endblock %}</body></html>")
    (tmp_path / "ok.html").write_text(
        '{% extends "_layout.html" %}{% block subject %}Hi {{ account.name }}{% endblock %}'
        "{% block content %}<p>Hello {{ contact.name }}</p>{% endblock %}"
    )
    (tmp_path / "bad.html").write_text(
        '{% extends "_layout.html" %}{% block subject %}Hi{% endblock %}{% block content %}'
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(40) }}{% endblock %}"
    )
    renderer = EmailRenderer(tmp_path, limits=RenderLimits(seconds=0.3))
    expected = renderer.render("ok", [""], CONTEXT)
    outcomes: list[str] = []

    def work(hostile: bool) -> None:
        for _ in range(3 if hostile else 400):
            try:
                got = renderer.render("bad" if hostile else "ok", [""], CONTEXT)
                outcomes.append("same" if got == expected else "different")
            except RenderError as exc:
                outcomes.append(str(exc))
        time.sleep(0.4)  # past any deadline: nothing may still be aimed at this thread
        outcomes.append("done")

    threads = [threading.Thread(target=work, args=(i % 2 == 0,), daemon=True) for i in range(4)]
    with fails_within(30):
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert outcomes.count("done") == 4
    assert outcomes.count("same") == 800
    assert outcomes.count("bad.html: render exceeded 0.3 s") == 6
    assert len(outcomes) == 810


def test_many_quick_renders_under_a_tight_deadline_are_never_interrupted(tmp_path: Path) -> None:
    """A deadline that passes just after a render finished must not strike the code after it."""
    email_files(tmp_path, "content", "<p>{{ contact.name }}</p>")
    renderer = EmailRenderer(tmp_path, limits=RenderLimits(seconds=0.002))
    done = 0
    for _ in range(2000):
        try:
            renderer.render("t", [""], CONTEXT)
        except RenderError as exc:
            assert "render exceeded" in str(exc)
        done += 1
        sum(range(2000))  # plain Python after the render: a stray deadline would land here
    time.sleep(0.05)
    assert done == 2000


def test_markup_that_the_text_generator_used_to_choke_on_is_linear() -> None:
    """Unterminated tags (`<a<a<a…`) made the tag expressions backtrack over the rest of the text."""
    from engine.render.text import html_to_text

    for markup in ["<a" * 200000, "<head" * 100000, "<!" * 200000, '<a "' * 100000, "<?" * 200000]:
        with fails_within(5):
            html_to_text(markup)


def test_validation_flags_literal_loops_over_the_limits(tmp_path: Path) -> None:
    (tmp_path / "big.en.html").write_text(
        "{% block subject %}Hi{% endblock %}\n"
        "{% for i in range(1000000) %}{% endfor %}\n"
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n"
        "{{ 'a' * 50000000 }}\n",
        encoding="utf-8",
    )
    problems = template_problems(EmailRenderer(tmp_path), "big")
    messages = [(p.line, p.message) for p in problems]
    assert [line for line, _ in messages] == [2, 3, 4]
    assert "range() of 1,000,000 items" in messages[0][1]
    assert "10,000,000,000 iterations" in messages[1][1]
    assert "50,000,000 characters" in messages[2][1]
    assert "iterations" in (inline_template_error("{% for i in range(100000) %}{% for j in range(100) %}"
                                                   "{% endfor %}{% endfor %}") or "")  # fmt: skip
    assert inline_template_error("{% for i in range(3) %}{{ i * 2 }}{% endfor %}") is None


_STYLE_REFERENCE = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.I | re.S)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            ["<style>", "<STYLE media=x>", "<style", "</style>", "</STYLE >", "</style", ">", "<", "p{}", "x", " "]
        ),
        max_size=40,
    ).map("".join)
)
def test_style_characters_counts_what_the_expression_finds(markup: str) -> None:
    assert style_characters(markup) == sum(len(css) for css in _STYLE_REFERENCE.findall(markup))


@pytest.mark.parametrize("piece", ["<style>", "<style", "<style>x</styl", "<style a='>'"])
def test_style_characters_stays_linear_on_openings_never_closed(piece: str) -> None:
    markup = piece * (400_000 // len(piece))  # the old expression: quadratic, tens of seconds here
    started = time.perf_counter()
    style_characters(markup)
    assert time.perf_counter() - started < 2.0
