"""The pure stages stay pure: no orchestration, provider or web imports, no database sessions."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

PURE_PACKAGES = ["engine.spec", "engine.load", "engine.validate", "engine.compile", "engine.render"]
FORBIDDEN_MODULES = ["prefect", "sendgrid", "fastapi", "starlette", "flows"]


def test_pure_stages_import_no_orchestration_or_providers() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {p}\n" for p in PURE_PACKAGES)
        + f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN_MODULES!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]"


def test_pure_stages_never_touch_a_connection() -> None:
    offenders = []
    for package in PURE_PACKAGES:
        for path in (REPO / package.replace(".", "/")).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and node.module in (
                    "sqlalchemy",
                    "sqlalchemy.orm",
                ):
                    names = {a.name for a in node.names}
                    if names & {"Connection", "Engine", "Session", "create_engine", "sessionmaker"}:
                        offenders.append(f"{path.relative_to(REPO)}: {sorted(names)}")
    assert offenders == []


def test_engine_never_imports_flows_or_cli() -> None:
    """The product never depends on its faces, nor on the demo and benchmark tooling beside it."""
    offenders = []
    for path in (REPO / "engine").rglob("*.py"):
        if "cli" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            top = (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else ""
            if top in ("flows", "demo", "benchmarks"):
                offenders.append(str(path.relative_to(REPO)))
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("engine.cli"):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []


# The modules that may ask the world what time it is (ARCHITECTURE.md, decision 4): the faces.
# Every stage takes `now` as a parameter; pacing and deadlines (the send rate, retries, the render
# deadline) measure durations with a real clock, which is not the world's `now`.
CLOCK_READERS = ("engine/cli/", "flows/", "engine/webhooks/app.py", "engine/console/app.py")


def test_only_the_faces_read_the_clock() -> None:
    readers = []
    for root in ("engine", "flows"):
        for path in (REPO / root).rglob("*.py"):
            rel = str(path.relative_to(REPO))
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ("now", "utcnow", "today")
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id in ("datetime", "date")
                    and not rel.startswith(CLOCK_READERS)
                ):
                    readers.append(f"{rel}:{node.lineno}")
    assert readers == []


# ARCHITECTURE.md, decision 5: where the dialect may be named. SQL expressions that differ per
# dialect are `@compiles` constructs of the compile stage; run-time choices (row locks, the
# advisory lock, temp tables, snapshots, SQLite's decode errors) sit in these modules only.
DIALECT_EXPRESSIONS = {"engine/compile/sql_functions.py", "engine/compile/json_keys.py"}
DIALECT_CHOICES = {
    "engine/dispatch/claims.py",  # FOR UPDATE SKIP LOCKED when claiming
    "engine/plan/batch.py",  # FOR UPDATE SKIP LOCKED on due enrollments
    "engine/plan/enroll.py",  # the per-playbook advisory lock, temporary-table lifetime
    "engine/simulate/replay.py",  # the read-only REPEATABLE READ snapshot it copies from
    "engine/store/bulk.py",  # executemany / COPY, conflict_insert
    "engine/store/migrations/env.py",  # Alembic's batch mode on SQLite
    "engine/store/readable.py",  # SQLite's error for text that is not UTF-8
    "engine/tick/stores.py",  # the explicit BEGIN of a SQLite dry run
    "engine/tick/dispatchers.py",  # dispatcher processes only where SKIP LOCKED lets them share
}


def test_the_dialect_is_named_only_where_architecture_says() -> None:
    compiles, chooses = set(), set()
    for path in (REPO / "engine").rglob("*.py"):
        rel = str(path.relative_to(REPO))
        source = path.read_text(encoding="utf-8")
        if "@compiles" in source:
            compiles.add(rel)
        if "dialect.name" in source:
            chooses.add(rel)
    assert compiles == DIALECT_EXPRESSIONS
    assert chooses == DIALECT_CHOICES


def test_no_module_is_over_500_lines() -> None:
    """Small modules, split along what they do (migrations excepted: they are history)."""
    long = []
    for root in ("engine", "flows", "demo", "benchmarks"):
        for path in (REPO / root).rglob("*.py"):
            if "migrations" not in path.parts and (lines := len(path.read_text(encoding="utf-8").splitlines())) > 500:
                long.append(f"{path.relative_to(REPO)}: {lines}")
    assert long == []
