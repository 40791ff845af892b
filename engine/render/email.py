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
from functools import lru_cache
from pathlib import Path
from typing import Any

import css_inline
from jinja2 import FileSystemLoader, StrictUndefined, Template, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment

from engine.problems import did_you_mean
from engine.render.limits import DEFAULT_LIMITS, LimitExceeded, RenderLimits, bounded, collect, current_limits
from engine.render.sandbox import BoundedEnvironment, static_limit_problems
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
    given, e.g. a recipient's address) and bounded (`engine/render/sandbox.py`), strict about
    undefined names, HTML autoescaped."""
    return BoundedEnvironment(
        loader=FileSystemLoader(str(templates_dir)),
        undefined=StrictUndefined,
        autoescape=select_autoescape(["html"], default_for_string=True),
        auto_reload=False,
        # A plain dict, not Jinja's LRU cache: the cache's lock may be taken while a template
        # renders ({% extends %}), where the deadline can interrupt any statement.
        cache_size=-1,
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
    """Renders named templates for a locale chain; compiled templates are cached (~10 ms each).

    Each message renders under `limits` (time, output, loops, value sizes): over one, that
    message fails with a RenderError saying which, and the caller goes on with the next.
    """

    def __init__(self, templates_dir: Path, limits: RenderLimits = DEFAULT_LIMITS) -> None:
        self.templates_dir = templates_dir
        self.limits = limits
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
            # Compiled outside the deadline (cached): only running a template is bounded.
            template = self.env.get_template(filename)
            if isinstance(subject, dict):  # per locale: this email's, else English, else any
                subject = subject.get(locale) or subject.get(DEFAULT_LOCALE) or next(iter(subject.values()))
            arm_subject = _compile_inline(subject) if subject is not None else None
            return bounded(self.limits, lambda: _render_email(template, context, arm_subject, locale, filename))
        except RenderError:
            raise
        except LimitExceeded as exc:
            raise RenderError(f"{filename}: {exc}") from None
        except TemplateError as exc:
            raise RenderError(f"{filename}: {exc}") from None
        except Exception as exc:  # a runtime error in template logic (1/0, a bad filter argument)
            raise RenderError(f"{filename}: {type(exc).__name__}: {exc}") from None


def _render_email(
    template: Template, context: dict[str, Any], arm_subject: Template | None, locale: str, filename: str
) -> RenderedEmail:
    block = template.blocks.get("subject")
    if block is None:
        raise RenderError(f"{filename} defines no {{% block subject %}}")
    # One Jinja context for the body and the subject block (as Template.render builds it).
    jinja_context = template.new_context(context)
    html_body = collect(template.root_render_func(jinja_context))
    subject_html = collect(block(jinja_context))
    # A written plain-text part (`{% block text %}`), else one generated from the HTML.
    text_block = template.blocks.get("text")
    written = html.unescape(collect(text_block(jinja_context))) if text_block is not None else None
    if arm_subject is not None:
        subject_html = html.escape(collect(arm_subject.root_render_func(arm_subject.new_context(context))))
    line = html.unescape(subject_html).strip()
    if len(line.splitlines()) > 1 or "\r" in line or "\n" in line:
        # splitlines() is the email library's notion of a line break (CR, LF, U+2028, …).
        raise RenderError(f"{filename}: the subject contains a line break: {line!r}")
    if not line:
        raise RenderError(f"{filename}: the subject is empty")
    if arm_subject is not None:  # the layout's <title> showed the template's own subject
        html_body = _replace_title(html_body, f"<title>{html.escape(line)}</title>")
    # Email clients drop <style> blocks: move the layout's CSS onto each element.
    inlined = _inline_css(html_body)
    text = written.strip() + "\n" if written is not None else html_to_text(html_body)
    return RenderedEmail(line, inlined, text, locale, filename)


INLINE_WORK = 20_000_000
"""The most CSS inlining may do for one message: characters of `<style>` × tags. The inliner is
native code that no deadline interrupts, and it copies each matching rule onto every element (a
few thousand tags under a big stylesheet took seconds and a gigabyte), so its work is bounded
before it starts. Real emails stay far below: ~3 KB of CSS × a few hundred tags."""
_STYLE_OPEN = re.compile(r"<style\b", re.I)
_STYLE_CLOSE = re.compile(r"</style\s*>", re.I)


def style_characters(markup: str) -> int:
    """Characters inside `<style>` elements: what `<style\\b[^>]*>(.*?)</style\\s*>` finds, in
    linear time. (That expression, run by `findall`, rescans to the end from every opening that
    is never closed: 14,000 × `<style>` took 2 s, in one C call no deadline stops.) An opening
    with no `>`, or no closing tag, after it means no later one has either: the count stops."""
    total, pos = 0, 0
    while (opening := _STYLE_OPEN.search(markup, pos)) is not None:
        end = markup.find(">", opening.end())
        closing = _STYLE_CLOSE.search(markup, end + 1) if end >= 0 else None
        if closing is None:
            break
        total += closing.start() - (end + 1)
        pos = closing.end()
    return total


def _inline_css(markup: str) -> str:
    """`markup` with its `<style>` rules inlined, within `INLINE_WORK` and the output limit."""
    css = style_characters(markup)
    tags = markup.count("<")
    if css * tags > INLINE_WORK:
        raise LimitExceeded(
            f"inlining {css:,} characters of CSS into {tags:,} tags is over the limit of {INLINE_WORK:,} (CSS × tags)"
        )
    inlined = _INLINER.inline(markup)
    limit = current_limits().output
    if len(inlined) > limit:
        raise LimitExceeded(
            f"the HTML with its CSS inlined is {len(inlined):,} characters, over the limit of {limit:,}"
        )
    return inlined


def _replace_title(markup: str, title: str) -> str:
    """The first <title>…</title> replaced; two searches, never a scan per candidate tag."""
    start = _TITLE_OPEN.search(markup)
    end = _TITLE_CLOSE.search(markup, start.end()) if start is not None else None
    if start is None or end is None:
        return markup
    return markup[: start.start()] + title + markup[end.end() :]


_INLINE = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, cache_size=-1)
_TITLE_OPEN = re.compile(r"<title\b[^<>]*+>", re.I)
_TITLE_CLOSE = re.compile(r"</title\s*>", re.I)
_INLINER = css_inline.CSSInliner()  # thread-safe; one instance instead of one per message


def inline_template_error(source: str) -> str | None:
    """What is wrong with a template written in a playbook (syntax, unknown names, literal loops
    or values over the render limits), or None."""
    from engine.render.templates import undeclared

    try:
        ast = _INLINE.parse(source)
    except TemplateError as exc:
        return f"template syntax: {exc}"
    names = [name for name, _ in undeclared(ast)]
    if names:
        allowed = ", ".join(sorted(CONTEXT_NAMES))
        return f"undefined variable '{names[0]}'{did_you_mean(names[0], CONTEXT_NAMES)}; templates can use {allowed}"
    over = static_limit_problems(ast)
    return over[0][1] if over else None


@lru_cache(maxsize=1024)
def _compile_inline(source: str) -> Template:
    """A playbook's short template, compiled once per process (task titles repeat per message)."""
    return _INLINE.from_string(source)


def render_inline(source: str, context: dict[str, Any], limits: RenderLimits = DEFAULT_LIMITS) -> str:
    """Render a short template written in a playbook (task titles, webhook payloads) as plain
    text, under `limits`."""
    try:
        template = _compile_inline(source)
        return bounded(limits, lambda: collect(template.root_render_func(template.new_context(context))))
    except LimitExceeded as exc:
        raise RenderError(str(exc)) from None
    except TemplateError as exc:
        raise RenderError(str(exc)) from None
    except Exception as exc:  # runtime errors in template logic
        raise RenderError(f"{type(exc).__name__}: {exc}") from None
