"""Email templates: `templates/email/<name>.<locale>.html`, one file per locale.

A template extends a layout and defines `{% block subject %}` and `{% block content %}`. The
subject block is rendered on its own and must come out as one line: a CR or LF there (say, from
customer data) fails that message instead of forging a header.
"""

from __future__ import annotations

import hashlib
import html
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedEnvironment

from engine.problems import did_you_mean
from engine.render.text import html_to_text

CONTEXT_NAMES = frozenset({"account", "contact", "csm", "sender", "playbook", "step", "unsubscribe_url"})
"""The variables a template may use."""
DEFAULT_LOCALE = "en"


class RenderError(Exception):
    """A template failed for one message; the message says why, for the audit."""


@dataclass(frozen=True)
class RenderedEmail:
    """A rendered message, ready for a channel."""

    subject: str
    html: str
    text: str
    locale: str
    template_file: str

    @property
    def content_hash(self) -> str:
        """Hash of what the recipient sees: ties the audit to the exact content."""
        digest = hashlib.sha256(f"{self.subject}\0{self.html}\0{self.text}".encode())
        return digest.hexdigest()[:16]


def make_environment(templates_dir: Path) -> SandboxedEnvironment:
    """The one Jinja2 environment: sandboxed (immutable: a template cannot change the data it is
    given, e.g. a recipient's address), strict about undefined names, HTML autoescaped."""
    return ImmutableSandboxedEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"], default_for_string=True),
        auto_reload=False,
    )


def locale_chain(*preferred: str | None) -> list[str]:
    """Locales to try in order: the given ones (contact's, account's), then English, then none."""
    chain = [p for p in preferred if p]
    chain.append(DEFAULT_LOCALE)
    chain.append("")
    return list(dict.fromkeys(chain))


def template_filename(name: str, locale: str) -> str:
    """`renewal/plan` + `ko` → `renewal/plan.ko.html`; the empty locale is the default file."""
    return f"{name}.{locale}.html" if locale else f"{name}.html"


class EmailRenderer:
    """Renders named templates for a locale chain; compiled templates are cached (~10 ms each)."""

    def __init__(self, templates_dir: Path) -> None:
        self.templates_dir = templates_dir
        self.env = make_environment(templates_dir)
        # (name, locale chain) → locale: a stat per locale per message showed up in the dispatch
        # profile; the files of a loaded project do not change under a run.
        self._picked: dict[tuple[str, tuple[str, ...]], str] = {}

    def variants(self, name: str) -> list[str]:
        """Locales (`''` for the default) that have a file for template `name`."""
        found = [p.name[len(Path(name).name) + 1 : -len(".html")] for p in self.templates_dir.glob(f"{name}.*.html")]
        if (self.templates_dir / template_filename(name, "")).is_file():
            found.append("")
        return sorted(found)

    def pick(self, name: str, chain: list[str]) -> str:
        """The first locale in `chain` that has a file for `name`."""
        key = (name, tuple(chain))
        if key in self._picked:
            return self._picked[key]
        for loc in chain:
            if (self.templates_dir / template_filename(name, loc)).is_file():
                self._picked[key] = loc
                return loc
        raise RenderError(f"template '{name}' has no file for locales {', '.join(c or 'default' for c in chain)}")

    def render(
        self, name: str, chain: list[str], context: dict[str, Any], subject: str | dict[str, str] | None = None
    ) -> RenderedEmail:
        """Render template `name` in the first available locale of `chain`; `subject` (a short
        template, e.g. an experiment arm's) replaces the template's subject block."""
        locale = self.pick(name, chain)
        filename = template_filename(name, locale)
        try:
            template = self.env.get_template(filename)
            block = template.blocks.get("subject")
            if block is None:
                raise RenderError(f"{filename} defines no {{% block subject %}}")
            # One Jinja context for the body and the subject block (as Template.render builds it).
            jinja_context = template.new_context(context)
            html_body = "".join(template.root_render_func(jinja_context))
            subject_html = "".join(block(jinja_context))
            # A written plain-text part (`{% block text %}`), else one generated from the HTML.
            text_block = template.blocks.get("text")
            written = html.unescape("".join(text_block(jinja_context))) if text_block is not None else None
            if subject is not None:
                if isinstance(subject, dict):  # per locale: this email's, else English, else any
                    subject = subject.get(locale) or subject.get(DEFAULT_LOCALE) or next(iter(subject.values()))
                subject_html = html.escape(_INLINE.from_string(subject).render(context))
        except RenderError:
            raise
        except TemplateError as exc:
            raise RenderError(f"{filename}: {exc}") from None
        except Exception as exc:  # a runtime error in template logic (1/0, a bad filter argument)
            raise RenderError(f"{filename}: {type(exc).__name__}: {exc}") from None
        line = html.unescape(subject_html).strip()
        if len(line.splitlines()) > 1 or "\r" in line or "\n" in line:
            # splitlines() is the email library's notion of a line break (CR, LF, U+2028, …).
            raise RenderError(f"{filename}: the subject contains a line break: {line!r}")
        if not line:
            raise RenderError(f"{filename}: the subject is empty")
        if subject is not None:  # the layout's <title> showed the template's own subject
            title = f"<title>{html.escape(line)}</title>"
            html_body = _TITLE.sub(lambda _: title, html_body, count=1)
        # Email clients drop <style> blocks: move the layout's CSS onto each element.
        inlined = _INLINER.inline(html_body)
        text = written.strip() + "\n" if written is not None else html_to_text(html_body)
        return RenderedEmail(line, inlined, text, locale, filename)


_INLINE = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_TITLE = re.compile(r"<title\b[^>]*>.*?</title\s*>", re.I | re.S)
_INLINER = css_inline.CSSInliner()  # thread-safe; one instance instead of one per message


def inline_template_error(source: str) -> str | None:
    """What is wrong with a template written in a playbook (syntax, unknown names), or None."""
    from engine.render.templates import undeclared

    try:
        ast = _INLINE.parse(source)
    except TemplateError as exc:
        return f"template syntax: {exc}"
    names = [name for name, _ in undeclared(ast)]
    if names:
        allowed = ", ".join(sorted(CONTEXT_NAMES))
        return f"undefined variable '{names[0]}'{did_you_mean(names[0], CONTEXT_NAMES)}; templates can use {allowed}"
    return None


def render_inline(source: str, context: dict[str, Any]) -> str:
    """Render a short template written in a playbook (task titles) as plain text."""
    try:
        return _INLINE.from_string(source).render(context)
    except TemplateError as exc:
        raise RenderError(str(exc)) from None
    except Exception as exc:  # runtime errors in template logic
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
