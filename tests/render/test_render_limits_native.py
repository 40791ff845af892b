"""What the deadline cannot interrupt is bounded before it runs: native CSS inlining, and single
C-level operations on bytes or through `str.translate` (each would allocate gigabytes at once)."""

from __future__ import annotations

import resource
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.render import EmailRenderer, RenderError
from tests.render.test_render_limits import CONTEXT, fails_within


def _template(tmp_path: Path, body: str) -> EmailRenderer:
    (tmp_path / "t.html").write_text("{% block subject %}Hi{% endblock %}" + body, encoding="utf-8")
    return EmailRenderer(tmp_path)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        # A big stylesheet over thousands of tags: the inliner copies rules onto every element.
        (
            "<style>p{ {%- for i in range(3000) %}--v{{i}}:{{ 'x'*30 }};{% endfor -%} }</style>"
            "{% for i in range(5000) %}<p></p>{% endfor %}",
            "CSS",
        ),
        # No stylesheet of its own, but a million tags under a small one.
        ("<style>li{color:red;margin:0}</style>{% for i in range(100000) %}<li><li><li>{% endfor %}", "CSS"),
        ("{{ ('a'.encode() * 1500000000)|length }}", "'*'"),
        ("{{ ('a'*5000000).encode().replace('a'.encode(), ('a'*400).encode())|length }}", "replace"),
        ("{{ ('a'*5000000).translate({97: 'b'*1000})|length }}", "translate"),
        ("{{ 'ab'.encode().join(['a'.encode() * 4000000] * 4)|length }}", "'*'"),
    ],
)
def test_native_work_is_refused_before_it_starts(tmp_path: Path, body: str, reason: str) -> None:
    with fails_within(), pytest.raises(RenderError, match=reason):
        _template(tmp_path, body).render("t", [""], CONTEXT)


def test_a_stylesheet_over_many_tags_cannot_kill_the_process(tmp_path: Path) -> None:
    """The case that made the inliner abort the whole process (SIGABRT, no exception): now a
    RenderError in a process whose memory is capped at 1 GB."""
    (tmp_path / "t.html").write_text(
        "{% block subject %}Hi{% endblock %}<style>p{ {%- for i in range(3000) %}--v{{i}}:{{ 'x'*30 }};"
        "{% endfor -%} }</style>{% for i in range(20000) %}<p></p>{% endfor %}",
        encoding="utf-8",
    )
    code = textwrap.dedent(f"""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from pathlib import Path
        from engine.render import EmailRenderer, RenderError
        from tests.render.test_render_limits import CONTEXT
        try:
            EmailRenderer(Path({str(tmp_path)!r})).render("t", [""], CONTEXT)
        except RenderError as exc:
            print("refused:", exc)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr[-500:]
    assert "refused:" in done.stdout and "CSS" in done.stdout
    assert resource.getrlimit(resource.RLIMIT_AS)  # the cap applied to the child only


def test_the_project_templates_still_inline(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[2] / "templates" / "email"
    rendered = EmailRenderer(repo).render("welcome/hello", ["en"], CONTEXT)
    assert "style=" in rendered.html and "<style" not in rendered.html.split("</head>")[-1]
