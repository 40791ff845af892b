"""Static checks of email templates: syntax with line numbers, names, the subject block, and
literals over the render limits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from jinja2 import TemplateSyntaxError, nodes

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
