"""Pydantic validation errors → Problems at the YAML line:col, with "did you mean" for unknown keys.

Pydantic's error locations mix data keys with union tags ('email', 'field', …). We walk the data
to find the deepest real path for the line:col, and walk the spec types in parallel to know which
keys were allowed where a key was unknown.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Callable
from typing import Any, Union

from pydantic import BaseModel, RootModel, Tag, ValidationError
from pydantic_core import ErrorDetails

from engine.load.yaml_nodes import Located, Path
from engine.problems import Problem, did_you_mean
from engine.spec.playbook import IDENTIFIER, TEMPLATE_NAME


def problems_from_validation(error: ValidationError, located: Located, root: type[BaseModel]) -> list[Problem]:
    """One Problem per pydantic error, sorted by position, without repeats."""
    out: set[Problem] = set()
    for err in error.errors(include_url=False):
        path = _data_path(located.data, err["loc"], root)
        line, col = located.where(path)
        out.add(Problem(located.path, line, col, _message(err, path, located.data, root)))
    # "unknown key 'templat' (did you mean 'template'?)" already says what "missing 'template'" would.
    suggested = {m.group(1) for p in out if (m := re.search(r"\(did you mean '([^']+)'\?\)", p.message))}
    return sorted(p for p in out if not any(p.message.startswith(f"missing required key '{k}'") for k in suggested))


def _data_path(data: Any, loc: tuple[int | str, ...], root: type[BaseModel]) -> Path:
    """The keys of `loc` that exist in `data`, skipping pydantic's union tags."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        if _is_tag(root, loc[:i], part):
            continue
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
    return tuple(path)


def _message(err: ErrorDetails, path: Path, data: Any, root: type[BaseModel]) -> str:
    where = _dotted(path)
    kind = err["type"]
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        allowed = _allowed_keys(root, err["loc"][:-1])
        hint = did_you_mean(key, allowed)
        listing = f"; allowed here: {', '.join(sorted(allowed))}" if allowed and not hint else ""
        return f"unknown key '{key}'{hint}{listing}"
    if kind == "missing":
        name = str(err["loc"][-1])
        parent = _dotted(path)
        return f"missing required key '{name}'" + (f" in '{parent}'" if parent else "")
    friendly = _FRIENDLY.get(kind)
    if friendly is not None:
        return f"{where}: {friendly(err)}" if where else friendly(err)
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Input should be"):
        msg = "should be" + msg[len("Input should be") :]
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) or repr(value) in msg else f" (got {value!r})"
    return f"{where}: {msg}{shown}" if where else f"{msg}{shown}"


def _pattern(err: ErrorDetails) -> str:
    value = str(err.get("input"))
    pattern = str((err.get("ctx") or {}).get("pattern", ""))
    if pattern == IDENTIFIER:
        return f"'{value}' is not an identifier: use lower-case letters, digits, '-' and '_'"
    if pattern == TEMPLATE_NAME:
        bare = value.split(".")[0]
        hint = f" (did you mean '{bare}'?)" if bare != value and re.match(TEMPLATE_NAME, bare) else ""
        return (
            f"'{value}' is not a template name: write the path under templates/email/ without locale or extension{hint}"
        )
    return f"'{value}' does not match {pattern}"


_FRIENDLY: dict[str, Callable[[ErrorDetails], str]] = {
    "too_short": lambda err: (
        "must not be empty"
        if not err.get("input")
        else f"needs at least {(err.get('ctx') or {}).get('min_length')} items"
    ),
    "string_pattern_mismatch": _pattern,
    "string_too_short": lambda err: "must not be empty",
}


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _allowed_keys(root: type[BaseModel], loc: tuple[int | str, ...]) -> set[str]:
    """Keys the spec allows at `loc` (a pydantic location, tags included)."""
    for model in _models_at(root, loc):
        return {f.alias or name for name, f in model.model_fields.items()}
    return set()


Candidate = tuple[Any, tuple[str, ...]]
"""A type the data may have at a location, with the union tags pydantic will put in the path first."""


def _is_tag(root: type[BaseModel], before: tuple[int | str, ...], part: int | str) -> bool:
    return isinstance(part, str) and any(tags and tags[0] == part for _, tags in _candidates_at(root, before))


def _models_at(tp: Any, loc: tuple[int | str, ...]) -> list[type[BaseModel]]:
    candidates = _candidates_at(tp, loc)
    return [c for c, tags in candidates if not tags and isinstance(c, type) and issubclass(c, BaseModel)]


def _candidates_at(tp: Any, loc: tuple[int | str, ...]) -> list[Candidate]:
    candidates = _expand(tp)
    for part in loc:
        tagged = [(c, tags[1:]) for c, tags in candidates if tags and tags[0] == part]
        if tagged:
            candidates = tagged
            continue
        nxt: list[Candidate] = []
        for cand, tags in candidates:
            if tags:
                continue
            if isinstance(cand, type) and issubclass(cand, RootModel):
                cand = cand.model_fields["root"].annotation
            origin: Any = typing.get_origin(cand)
            if isinstance(part, int) and origin is list:
                nxt.extend(_expand(typing.get_args(cand)[0]))
            elif isinstance(part, str) and origin is dict:
                nxt.extend(_expand(typing.get_args(cand)[1]))
            elif isinstance(part, str) and isinstance(cand, type) and issubclass(cand, BaseModel):
                for name, f in cand.model_fields.items():
                    if part in (name, f.alias):
                        nxt.extend(_expand(f.annotation))
        candidates = nxt
    return candidates


def _expand(tp: Any, tags: tuple[str, ...] = ()) -> list[Candidate]:
    """Unwrap Annotated/Optional/unions into (type, union tags outermost first)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        args = typing.get_args(tp)
        own = tuple(m.tag for m in args[1:] if isinstance(m, Tag))
        return _expand(args[0], tags + own)
    if origin in (Union, types.UnionType):
        out: list[Candidate] = []
        for arg in typing.get_args(tp):
            if arg is not type(None):
                out.extend(_expand(arg, tags))
        return out
    return [(tp, tags)]
