"""Templates checked against the context they will get, without rendering a single message.

Static analysis of the Jinja tree: every `name.attribute` (or `name['key']`) read from a context
variable is looked up in `CONTEXT_SHAPE` — the variables dispatch builds for every email, task and
webhook (`engine/dispatch/context.py`, `template_context`; a test keeps the two equal) —, every
filter and test in the environment's own tables, and a subject with nothing in it is flagged.
What the check cannot know (a trait's keys, the methods of a date) it leaves alone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, TemplateSyntaxError, nodes

from engine.problems import Problem, did_you_mean
from engine.render import CONTEXT_NAMES, EmailRenderer, inline_template_error, locale_chain
from engine.render.email import template_filename
from engine.render.sandbox import BoundedEnvironment
from engine.render.templates import template_problems
from engine.store.models import accounts, contacts, csms


@dataclass(frozen=True)
class Shape:
    """What a context variable holds: its keys (None: a plain value such as a URL), the keys
    whose own keys are free (traits), and the keys present only sometimes, with why."""

    fields: frozenset[str] | None
    open_keys: frozenset[str] = frozenset()
    sometimes: Mapping[str, str] | None = None


_CSM_ALWAYS = frozenset({"name", "email"})
CONTEXT_SHAPE: dict[str, Shape] = {
    "account": Shape(frozenset(c.name for c in accounts.c), frozenset({"traits"})),
    "contact": Shape(frozenset(c.name for c in contacts.c), frozenset({"traits"})),
    # An account without a CSM gets the team in its place: only name and email are always there.
    "csm": Shape(
        _CSM_ALWAYS,
        sometimes={
            key: "is there only when the account has a CSM (otherwise: name, email)"
            for key in (c.name for c in csms.c)
            if key not in _CSM_ALWAYS
        },
    ),
    "sender": Shape(frozenset({"name", "email"})),
    "playbook": Shape(frozenset({"id", "name"})),
    "step": Shape(frozenset({"id"})),
    "unsubscribe_url": Shape(None),
}
"""Every variable a template sees, with the keys it has (see `template_context`)."""

assert set(CONTEXT_SHAPE) == CONTEXT_NAMES, "the shape names every context variable"

_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
"""Reading a dict through its methods is allowed by the sandbox (and never mutates it)."""
_ENV: Environment = BoundedEnvironment()
"""For the filter and test tables and parsing inline templates: the same as the renderer's."""
_FILTER_ALIASES = {
    "upcase": "upper",
    "uppercase": "upper",
    "downcase": "lower",
    "lowercase": "lower",
    "strip": "trim",
    "size": "length",
    "len": "length",
}
"""Names other template languages (Liquid, Django) give Jinja's filters: too far apart to guess."""
_LISTED = 6
"""Up to this many keys, an unknown attribute's message lists them all."""


def context_problems(
    ast: nodes.Template, env: Environment = _ENV, without_contact: str | None = None
) -> list[tuple[int, str]]:
    """(line, message) for every unknown attribute, filter or test in `ast`, in source order.

    `without_contact` says why `contact` is empty where the template renders (a task of an
    account subject): then any `contact.…` read is a problem.
    """
    assigned = {n.name for n in ast.find_all(nodes.Name) if n.ctx in ("store", "param")}
    found: list[tuple[int, str]] = []
    for node in _walk(ast):
        if isinstance(node, nodes.Filter) and node.name not in env.filters:
            alias = _FILTER_ALIASES.get(node.name)
            hint = f" (did you mean '{alias}'?)" if alias else did_you_mean(node.name, env.filters)
            found.append((node.lineno, f"unknown filter '{node.name}'{hint}"))
        elif isinstance(node, nodes.Test) and node.name not in env.tests:
            found.append((node.lineno, f"unknown test '{node.name}'{did_you_mean(node.name, env.tests)}"))
        elif isinstance(node, nodes.Getattr | nodes.Getitem):
            read = _read_of(node)
            if read is None or read[0] in assigned:
                continue
            message = _attribute_problem(*read, without_contact)
            if message:
                found.append((node.lineno, message))
    return found


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    """Every node of the tree in source order (`find_all` is per type; messages read top-down)."""
    for child in node.iter_child_nodes():
        yield child
        yield from _walk(child)


def _read_of(node: nodes.Getattr | nodes.Getitem) -> tuple[str, str] | None:
    """(variable, key) when `node` reads a key of a context variable directly: `account.name`,
    `account['name']`; None for anything deeper or computed."""
    target = node.node
    if not isinstance(target, nodes.Name) or target.ctx != "load" or target.name not in CONTEXT_SHAPE:
        return None
    if isinstance(node, nodes.Getattr):
        return target.name, node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return target.name, node.arg.value
    return None


def _attribute_problem(name: str, key: str, without_contact: str | None) -> str | None:
    if name == "contact" and without_contact is not None:
        return f"'contact.{key}': {without_contact}"
    shape = CONTEXT_SHAPE[name]
    if shape.fields is None or key in shape.fields or key in _DICT_METHODS:
        return None
    if shape.sometimes and key in shape.sometimes:
        return f"'{key}' of {name} {shape.sometimes[key]}"
    hint = did_you_mean(key, shape.fields)
    if not hint and len(shape.fields) <= _LISTED:
        hint = f"; {name} has {', '.join(sorted(shape.fields))}"
    return f"unknown attribute '{key}' of {name}{hint}"


def renders_empty(body: list[nodes.Node]) -> bool:
    """True when `body` (a block's or an inline template's) can only output whitespace: no text
    and nothing computed (an empty string literal counts as nothing)."""
    for node in body:
        if not isinstance(node, nodes.Output):
            return False  # an if, a for, a call: what it outputs is not known without data
        for part in node.nodes:
            if isinstance(part, nodes.TemplateData | nodes.Const):
                if str(part.data if isinstance(part, nodes.TemplateData) else part.value).strip():
                    return False
            else:
                return False
    return True


def subject_problem(ast: nodes.Template) -> tuple[int, str] | None:
    """The subject block, when it can only render empty (dispatch would fail every message)."""
    for block in ast.find_all(nodes.Block):
        if block.name == "subject" and renders_empty(block.body):
            return block.lineno, "the subject renders empty: write text or a variable in {% block subject %}"
    return None


def inline_template_problems(source: str, what: str = "template", without_contact: str | None = None) -> list[str]:
    """What is wrong with a short template written in a playbook (a task title or body, a
    webhook string, an arm's subject): its syntax and limits or unknown names, else its unknown
    attributes, filters and tests and — for a title or a subject (`what`) — that it renders empty."""
    error = inline_template_error(source)
    if error:
        return [error]
    ast = _ENV.parse(source)  # parsed above already: no syntax error here
    problems = [message for _, message in context_problems(ast, without_contact=without_contact)]
    if what != "template" and renders_empty(ast.body):
        problems.append(f"the {what} renders empty")
    return problems


def template_file_problems(renderer: EmailRenderer, name: str, display: Callable[[Path], str] = str) -> list[Problem]:
    """Every problem of template `name`: its files' own (`template_problems`: syntax, names,
    limits), each checked against the context (unknown attributes, filters and tests, an empty
    subject), and — once its files are sound — each locale the project speaks that it lacks.

    The project's locales are the ones its templates are written in: a template without its
    `.ko.html` in a project that writes Korean sends Korean contacts the fallback of
    `locale_chain` (English, then the default file) — or fails when there is none.
    """
    found = template_problems(renderer, name, display)
    have = renderer.variants(name)
    for locale in have:
        path = renderer.templates_dir / template_filename(name, locale)
        shown = display(path)
        try:
            ast = renderer.env.parse(path.read_text(encoding="utf-8", errors="replace"))
        except TemplateSyntaxError:
            continue  # reported by `template_problems` at its line
        checks = context_problems(ast, renderer.env)
        empty = subject_problem(ast)
        found.extend(Problem(shown, line, 1, message) for line, message in [*checks, *([empty] if empty else [])])
    if have and not found:  # a missing translation is noise next to a broken template
        first = display(renderer.templates_dir / template_filename(name, have[0]))
        for locale in sorted(project_locales(renderer) - set(have)):
            message, fails = _missing_locale(renderer, name, locale)
            # Falling back to another language may be a choice (a warning); failing never is.
            found.append(Problem(first, 1, 1, message, "error" if fails else "warning"))
    return found


def project_locales(renderer: EmailRenderer) -> set[str]:
    """The locales the project's templates are written in (`x.ko.html` → `ko`; layouts, named
    `_…`, aside)."""
    found: set[str] = set()
    for path in renderer.templates_dir.rglob("*.html"):
        parts = path.name.split(".")
        if not path.name.startswith("_") and len(parts) == 3 and parts[1]:
            found.add(parts[1])
    return found


_LANGUAGES = {"en": "English", "ko": "Korean", "ja": "Japanese", "zh": "Chinese", "de": "German", "fr": "French"}


def _missing_locale(renderer: EmailRenderer, name: str, locale: str) -> tuple[str, bool]:
    """What a contact of `locale` gets without its file, and whether their emails fail."""
    language = _LANGUAGES.get(locale.split("-")[0].split("_")[0], f"'{locale}'")
    wanted = template_filename(name, locale)
    chain = locale_chain(locale)
    fallback = next(
        (loc for loc in chain[1:] if (renderer.templates_dir / template_filename(name, loc)).is_file()), None
    )
    if fallback is not None:
        shown = f"'{fallback}'" if fallback else "default"
        return f"no {language} file ({wanted}): contacts whose locale is '{locale}' get the {shown} one", False
    default = template_filename(name, "")
    message = f"no {language} file ({wanted}) and no default ({default}): "
    message += f"emails to contacts whose locale is '{locale}' will fail"
    return message, True
