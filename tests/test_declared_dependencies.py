"""Every third-party package the code imports is declared in pyproject.toml, not merely installed.

A package that only arrives as someone else's dependency (Prefect brings Starlette, uvicorn, httpx
and cryptography) disappears the day that dependency stops needing it. The product's code
(engine/, flows/, demo/, benchmarks/) must import only `dependencies`; the tests may also import the `dev` extra.
constraints.txt pins the whole resolved set at versions the declared ranges accept.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

FIRST_PARTY = {"engine", "flows", "demo", "benchmarks", "tests"}


def _normalized(distribution: str) -> str:
    """PEP 503 name: case, `-`, `_` and `.` do not distinguish distributions."""
    return str(canonicalize_name(distribution))


def _requirements(*extras: str) -> list[Requirement]:
    """`dependencies` plus the named optional-dependency groups of pyproject.toml."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in extras:
        requirements += project["optional-dependencies"][extra]
    return [Requirement(r) for r in requirements]


def _declared(*extras: str) -> set[str]:
    """Distribution names of `dependencies` plus the named optional-dependency groups."""
    return {_normalized(r.name) for r in _requirements(*extras)}


def _pins() -> dict[str, str]:
    """constraints.txt: distribution name → pinned version."""
    pins = {}
    for line in (REPO / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not a `name==version` pin"
            pins[_normalized(name)] = version.strip()
    return pins


def _resolved(requirements: list[Requirement]) -> set[str]:
    """The installed distributions these requirements pull in, transitively, extras included."""
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [(r.name, frozenset(r.extras)) for r in requirements if r.marker is None or r.marker.evaluate()]
    while todo:
        name, extras = todo.pop()
        if (_normalized(name), extras) in seen:
            continue
        seen.add((_normalized(name), extras))
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue  # an optional dependency this platform does not need
        for text in requires:
            child = Requirement(text)
            wanted = child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras | {""})
            if wanted:
                todo.append((child.name, frozenset(child.extras)))
    return {name for name, _ in seen}


def third_party_imports(*folders: str) -> dict[str, list[str]]:
    """Top-level module name → the files importing it, for absolute imports that are neither the
    standard library nor this project's own packages."""
    found: dict[str, list[str]] = {}
    for folder in folders:
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top in sys.stdlib_module_names or top in FIRST_PARTY:
                        continue
                    where = f"{path.relative_to(REPO)}:{node.lineno}"
                    found.setdefault(top, []).append(where)
    return found


def undeclared(imports: dict[str, list[str]], declared: set[str]) -> list[str]:
    """One line per imported module that no declared distribution provides."""
    providers = importlib.metadata.packages_distributions()
    problems = []
    for module, places in sorted(imports.items()):
        distributions = {_normalized(d) for d in providers.get(module, [])}
        if not distributions:
            problems.append(f"{module} (imported at {places[0]}) is not installed")
        elif not distributions & declared:
            problems.append(f"{module} (imported at {places[0]}) comes from {sorted(distributions)}, not declared")
    return problems


@pytest.mark.parametrize(
    ("folders", "extras"),
    [(("engine", "flows", "demo", "benchmarks"), ()), (("tests",), ("dev",))],
    ids=["product-imports-in-dependencies", "test-imports-in-dependencies-or-dev"],
)
def test_every_third_party_import_is_declared(folders: tuple[str, ...], extras: tuple[str, ...]) -> None:
    imports = third_party_imports(*folders)
    assert len(imports) >= 5, imports  # the scan sees the imports (sqlalchemy, pydantic, ...)
    problems = undeclared(imports, _declared(*extras))
    assert not problems, "pyproject.toml lacks:\n" + "\n".join(problems)


def test_the_check_names_what_is_missing_and_where(tmp_path: Path) -> None:
    # The scan resolves import names to distributions: `yaml` is PyYAML, `_pytest` is pytest.
    imports = {"yaml": ["engine/x.py:3"], "_pytest": ["tests/y.py:9"], "no_such_module_xyz": ["engine/z.py:1"]}
    assert undeclared(imports, {"pyyaml", "pytest"}) == [
        "no_such_module_xyz (imported at engine/z.py:1) is not installed"
    ]
    assert undeclared(imports, {"pytest"})[1] == "yaml (imported at engine/x.py:3) comes from ['pyyaml'], not declared"


def test_constraints_pin_every_declared_dependency_within_its_range() -> None:
    pins = _pins()
    problems = []
    for requirement in _requirements("dev"):
        name = _normalized(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} has no pin")
        elif not requirement.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{requirement} does not accept the pin {pins[name]}")
        elif importlib.metadata.version(requirement.name) != pins[name]:
            installed = importlib.metadata.version(requirement.name)
            problems.append(f"{requirement} is pinned at {pins[name]} but {installed} is installed")
    assert not problems, "constraints.txt:\n" + "\n".join(problems)


def test_constraints_pin_everything_the_dependencies_pull_in() -> None:
    resolved = _resolved(_requirements("dev"))
    assert {"sqlalchemy", "greenlet", "starlette", "psycopg-binary"} <= resolved  # extras followed too
    assert sorted(resolved - set(_pins())) == []
