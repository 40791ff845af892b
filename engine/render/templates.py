"""Static checks of email templates: syntax with line numbers, names, and the subject block."""

from __future__ import annotations

from jinja2 import TemplateSyntaxError, meta

from engine.problems import Problem, did_you_mean
from engine.render.email import CONTEXT_NAMES, EmailRenderer, template_filename


def template_problems(renderer: EmailRenderer, name: str) -> list[Problem]:
    """Problems of every locale file of template `name`, at the template's own line."""
    found: list[Problem] = []
    for locale in renderer.variants(name):
        filename = template_filename(name, locale)
        path = renderer.templates_dir / filename
        shown = _display(renderer, filename)
        source = path.read_text(encoding="utf-8", errors="replace")
        try:
            ast = renderer.env.parse(source, name=filename)
        except TemplateSyntaxError as exc:
            found.append(Problem(shown, exc.lineno or 1, 1, f"template syntax: {exc.message}"))
            continue
        for var in sorted(meta.find_undeclared_variables(ast) - CONTEXT_NAMES):
            line = next((i for i, text in enumerate(source.splitlines(), 1) if var in text), 1)
            hint = did_you_mean(var, CONTEXT_NAMES)
            allowed = ", ".join(sorted(CONTEXT_NAMES))
            found.append(Problem(shown, line, 1, f"undefined variable '{var}'{hint}; templates can use {allowed}"))
        if "block subject" not in source:
            found.append(Problem(shown, 1, 1, "no {% block subject %}: every email needs a subject"))
    return found


def _display(renderer: EmailRenderer, filename: str) -> str:
    path = renderer.templates_dir / filename
    try:
        return str(path.relative_to(renderer.templates_dir.parent.parent))
    except ValueError:
        return str(path)
