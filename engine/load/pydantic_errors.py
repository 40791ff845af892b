"""Pydantic validation errors → Problems at the YAML line:col, with "did you mean" for unknown keys.

Pydantic's error locations mix data keys with union tags ('email', 'field', …). We walk the data
to find the deepest real path for the line:col, and walk the spec types in parallel to know which
keys were allowed where a key was unknown.
"""

from __future__ import annotations

import types
import typing
from typing import Any, Union

from pydantic import BaseModel, RootModel, ValidationError
from pydantic_core import ErrorDetails

from engine.load.yaml_nodes import Located, Path
from engine.problems import Problem, did_you_mean


def problems_from_validation(error: ValidationError, located: Located, root: type[BaseModel]) -> list[Problem]:
    """One Problem per pydantic error, sorted by position, without repeats."""
    out: set[Problem] = set()
    for err in error.errors(include_url=False):
        path = _data_path(located.data, err["loc"], root)
        line, col = located.where(path)
        out.add(Problem(located.path, line, col, _message(err, path, located.data, root)))
    return sorted(out)


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
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if msg.startswith("Input should be"):
        msg = "should be" + msg[len("Input should be") :]
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) else f" (got {value!r})"
    return f"{where}: {msg}{shown}" if where else f"{msg}{shown}"


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


def _is_tag(root: type[BaseModel], before: tuple[int | str, ...], part: int | str) -> bool:
    return isinstance(part, str) and any(tag == part for _, tag in _candidates_at(root, before))


def _models_at(tp: Any, loc: tuple[int | str, ...]) -> list[type[BaseModel]]:
    candidates = _candidates_at(tp, loc)
    return [c for c, _ in candidates if isinstance(c, type) and issubclass(c, BaseModel)]


def _candidates_at(tp: Any, loc: tuple[int | str, ...]) -> list[tuple[Any, str | None]]:
    candidates = _expand(tp)
    for part in loc:
        nxt: list[Any] = []
        for cand, tag in candidates:
            if isinstance(part, str) and tag is not None and part == tag:
                nxt.append((cand, None))
                continue
            if isinstance(cand, type) and issubclass(cand, RootModel):
                cand = cand.model_fields["root"].annotation
            origin = typing.get_origin(cand)
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


def _expand(tp: Any, tag: str | None = None) -> list[tuple[Any, str | None]]:
    """Unwrap Annotated/Optional/unions into (type, union tag) pairs."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        args = typing.get_args(tp)
        tags = [m.tag for m in args[1:] if type(m).__name__ == "Tag"]
        return _expand(args[0], tags[0] if tags else tag)
    if origin in (Union, types.UnionType):
        out: list[tuple[Any, str | None]] = []
        for arg in typing.get_args(tp):
            if arg is not type(None):
                out.extend(_expand(arg, tag))
        return out
    return [(tp, tag)]
