"""Imports flow one way: every module of the product belongs to a layer of ARCHITECTURE.md, and
imports only from its own layer or the layers below it.

The layers are written here as data, in the order ARCHITECTURE.md lists them; a module that no
layer names fails the test, so a new module has to be placed (and the document with it).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

from tests.conftest import REPO

LAYERS: list[tuple[str, list[str]]] = [
    # The language and small shared helpers: no I/O.
    ("base", ["engine.problems", "engine.header_text", "engine.spec", "engine.addresses", "engine.config",
              "engine.output", "engine.schema", "engine.health.spec"]),
    # The store's tables as declarations (SQLAlchemy Table objects: no connection).
    ("schema", ["engine.store.models", "engine.store.catalogue"]),
    # Pure stages: text and data in, frozen objects or decisions out.
    ("pure", ["engine.load", "engine.render", "engine.compile", "engine.validate", "engine.delivery_config",
              "engine.policy.calendar", "engine.policy.decide", "engine.experiments.assign",
              "engine.experiments.stats", "engine.plan.time", "engine.guard.sources", "engine.guard.decide",
              "engine.catalog.snapshot", "engine.health.load", "engine.health.sql"]),
    # What reads and writes the store for everyone above: connections, bulk writes, the audit.
    ("store", ["engine.store", "engine.audit", "engine.suppression", "engine.unsubscribe", "engine.plan.versions",
               "engine.archive"]),
    # A loaded project: playbooks compiled, templates, delivery settings, stored versions.
    ("project", ["engine.project"]),
    # The stages that run against the store.
    ("stages", ["engine.plan", "engine.policy", "engine.dispatch", "engine.webhooks", "engine.experiments",
                "engine.audit_report", "engine.ingest", "engine.guard", "engine.catalog",
                "engine.funnel", "engine.portfolio", "engine.tasks_report", "engine.health",
                "engine.approvals", "engine.timeline"]),
    # One tick and what replays or previews it.
    ("orchestration", ["engine.tick", "engine.simulate", "engine.preview"]),
    # Faces and tooling: the command line, the Prefect flows, the demo and the benchmarks.
    ("faces", ["engine.cli", "flows", "demo", "benchmarks", "engine.console"]),
]  # fmt: skip
ROOTS = ("engine", "flows", "demo", "benchmarks")


def layer_of(module: str) -> int | None:
    """The index of the layer whose longest prefix names `module`, or None."""
    best: tuple[int, int] | None = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    return None if best is None else best[0]


def modules() -> Iterator[tuple[str, ast.Module]]:
    """Every module of the product and its tooling, by dotted name, parsed."""
    for root in ROOTS:
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), ast.parse(path.read_text(encoding="utf-8"))


def imported(tree: ast.Module) -> Iterator[str]:
    """The project modules `tree` imports (for `from a import b`, both `a` and `a.b`)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        yield from (n for n in names if n.split(".")[0] in ROOTS)


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m, _ in modules() if m != "engine" and layer_of(m) is None]
    assert unplaced == [], "place these modules in a layer (here and in ARCHITECTURE.md)"


def test_imports_never_go_up() -> None:
    upward = []
    for module, tree in modules():
        own = layer_of(module)
        if own is None:
            continue
        for target in imported(tree):
            theirs = layer_of(target)
            if theirs is not None and theirs > own:
                upward.append(f"{module} ({LAYERS[own][0]}) imports {target} ({LAYERS[theirs][0]})")
    assert sorted(set(upward)) == []


def test_the_check_sees_an_upward_import() -> None:
    """The checker itself: a compile module importing the tick would be reported."""
    tree = ast.parse("from engine.tick import run_stages\n")
    assert [layer_of(t) for t in imported(tree)] == [layer_of("engine.tick")] * 2
    assert layer_of("engine.tick") > layer_of("engine.compile.conditions")  # type: ignore[operator]
