"""Static checks of email templates: syntax with line numbers, names, the subject block, and
literals over the render limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from jinja2 import Template, TemplateSyntaxError, nodes

from engine.problems import Problem, did_you_mean
from engine.render.email import CONTEXT_NAMES, EmailRenderer, template_filename
from engine.render.sandbox import static_limit_problems


def template_problems(renderer: EmailRenderer, name: str, display: Callable[[Path], str] = str) -> list[Problem]:
    """Problems of every locale file of template `name`, at the template's own line.

    `display` turns a template's path into the name shown to the author (relative to where
    they run `touchflow validate`, like the playbook paths).
    """
    found: list[Problem] = []
    for locale in renderer.variants(name):
        filename = template_filename(name, locale)
        path = renderer.templates_dir / filename
        shown = display(path)
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            ast = renderer.env.parse(source, name=filename)
        except TemplateSyntaxError as exc:
            found.append(Problem(shown, exc.lineno or 1, 1, f"template syntax: {exc.message}"))
            continue
        for var, line in undeclared(ast):
            hint = did_you_mean(var, CONTEXT_NAMES)
            allowed = ", ".join(sorted(CONTEXT_NAMES))
            found.append(Problem(shown, line, 1, f"undefined variable '{var}'{hint}; templates can use {allowed}"))
        if "subject" not in {b.name for b in ast.find_all(nodes.Block)}:
            found.append(Problem(shown, 1, 1, "no {% block subject %}: every email needs a subject"))
        # Loops and values the literals already show to be over the render limits.
        found.extend(Problem(shown, line, 1, message) for line, message in static_limit_problems(ast))
    return found


def undeclared(ast: nodes.Template) -> list[tuple[str, int]]:
    """Names read but never assigned in the template, each at its first line."""
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    first: dict[str, int] = {}
    for n in ast.find_all(nodes.Name):
        if n.ctx == "load" and n.name not in assigned and n.name not in CONTEXT_NAMES:
            first[n.name] = min(first.get(n.name, n.lineno), n.lineno)
    # Jinja's own globals (range, loop, …) are not undeclared.
    return sorted(
        (k, v)
        for k, v in first.items()
        if k
        not in {
            "range",
            "loop",
            "super",
            "self",
            "varargs",
            "kwargs",
            "caller",
            "lipsum",
            "dict",
            "cycler",
            "joiner",
            "namespace",
        }
    )


def error_location(exc: BaseException) -> tuple[str, int] | None:
    """(template file, line) where a failed render went wrong, or None when no template line is
    known (a limit, a subject that came out empty).

    A RenderError keeps the template's own exception as its context: a syntax or compile error
    carries its file and line; a runtime error is found, as Jinja's own tracebacks do, in the
    innermost frame of compiled template code (`__jinja_template__`) mapped back to its line.
    """
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, TemplateSyntaxError) and cause.filename and cause.lineno:
            return cause.filename, cause.lineno
        found = _innermost_template_line(cause.__traceback__)
        if found is not None:
            return found
        cause = cause.__cause__ or cause.__context__
    return None


def _innermost_template_line(tb: TracebackType | None) -> tuple[str, int] | None:
    found: tuple[str, int] | None = None
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if isinstance(template, Template) and template.filename:
            found = template.filename, template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return found
