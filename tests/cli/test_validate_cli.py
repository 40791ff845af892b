"""`touchflow validate`: the summary on good playbooks, `file:line:col: error:` lines on bad ones,
and never a traceback, whatever the file holds."""

from __future__ import annotations

import itertools
import random
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from engine.cli import app

REPO = Path(__file__).resolve().parent.parent.parent
CORPUS_TEMPLATES = REPO / "tests" / "load" / "corpus_templates"
PROBLEM = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): error: (?P<message>.+)$")

BROKEN = """\
id: support-spike-copy
name: Support spike copy
priority: 101
trigger:
  events: {name: support_ticket_opened, at_least: 5, within: 7d}
steps:
  - task:
      title: "Support spike at {{ account.name }}"
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the repo's playbooks and templates; the working directory and project dir."""
    root = tmp_path / "proj"
    shutil.copytree(REPO / "playbooks", root / "playbooks")
    shutil.copytree(REPO / "templates", root / "templates")
    shutil.copy(REPO / "health.yaml", root / "health.yaml")  # the model review-request's condition reads
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(root))
    monkeypatch.chdir(root)
    return root


def _validate(*args: str) -> Result:
    return CliRunner().invoke(app, ["validate", *args])


def _assert_no_traceback(result: Result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output


def _problem_lines(result: Result) -> list[re.Match[str]]:
    return [m for line in result.stdout.splitlines() if (m := PROBLEM.match(line))]


def _assert_rejected(result: Result, name: str) -> list[re.Match[str]]:
    """Exit 1, no traceback, and every stdout line is a problem naming the file."""
    _assert_no_traceback(result)
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    problems = _problem_lines(result)
    assert problems, result.output
    assert len(problems) == len(lines), f"stdout has lines that are not problems:\n{result.stdout}"
    assert all(Path(m["path"]).name == name for m in problems), result.stdout
    return problems


# --- the happy path and the plain failure ---------------------------------------------------


def test_repo_playbooks_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOUCHFLOW_PROJECT_DIR", str(REPO))
    monkeypatch.chdir(REPO)
    n = len(list((REPO / "playbooks").glob("*.yaml")))
    result = _validate()
    _assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    # A store in the project (`make demo`) is the data catalogue: its warnings never fail validate.
    *warnings, last = result.stdout.splitlines()
    assert last == f"ok: {n} playbooks valid ({n} files)"
    assert all(": warning: " in line for line in warnings), result.stdout


def test_copied_project_is_valid_with_explicit_paths(project: Path) -> None:
    files = sorted(str(p.relative_to(project)) for p in (project / "playbooks").glob("*.yaml"))
    result = _validate(*files)
    _assert_no_traceback(result)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"ok: {len(files)} playbooks valid ({len(files)} files)"


def test_broken_playbook_fails_with_file_line_col(project: Path) -> None:
    (project / "playbooks" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    result = _validate()
    problems = _assert_rejected(result, "broken.yaml")
    assert [(m["path"], m["line"], m["col"]) for m in problems] == [("playbooks/broken.yaml", "3", "1")]
    assert "priority: should be less than or equal to 100" in problems[0]["message"]
    total = len(list((project / "playbooks").glob("*.yaml")))
    # Before the count, one line says which data catalogue the playbooks were checked against.
    assert result.stderr.splitlines()[-1:] == [f"1 problem in {total} files"]
    assert result.stderr.count("\n") == 2
    assert "ok:" not in result.output


def test_every_problem_of_every_file_is_reported(project: Path) -> None:
    (project / "playbooks" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    (project / "playbooks" / "also-broken.yaml").write_text(
        BROKEN.replace("support-spike-copy", "also").replace("7d}", "7x}"), encoding="utf-8"
    )
    result = _validate()
    _assert_no_traceback(result)
    assert result.exit_code == 1
    shown = {(Path(m["path"]).name, m["line"]) for m in _problem_lines(result)}
    assert shown == {("broken.yaml", "3"), ("also-broken.yaml", "3"), ("also-broken.yaml", "5")}


def test_duplicate_playbook_id_across_files(project: Path) -> None:
    original = (project / "playbooks" / "support-spike.yaml").read_text(encoding="utf-8")
    (project / "playbooks" / "zz-copy.yaml").write_text(original, encoding="utf-8")
    result = _validate()
    problems = _assert_rejected(result, "zz-copy.yaml")
    assert "playbook id 'support-spike' is also used by playbooks/support-spike.yaml" in problems[0]["message"]


def test_template_problem_names_the_template_file(project: Path) -> None:
    shutil.copytree(CORPUS_TEMPLATES / "broken", project / "templates" / "email" / "broken")
    playbook = (REPO / "tests" / "load" / "corpus" / "template_undefined.yaml").read_text(encoding="utf-8")
    (project / "playbooks" / "undefined.yaml").write_text(
        playbook.replace("id: renewal-90d", "id: renewal-undefined"), encoding="utf-8"
    )
    result = _validate()
    problems = _assert_rejected(result, "undefined.en.html")
    assert problems[0]["path"] == "templates/email/broken/undefined.en.html"
    assert problems[0]["line"] == "5"


def test_printed_paths_resolve_from_another_working_directory(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(CORPUS_TEMPLATES / "broken", project / "templates" / "email" / "broken")
    playbook = (REPO / "tests" / "load" / "corpus" / "template_undefined.yaml").read_text(encoding="utf-8")
    (project / "playbooks" / "undefined.yaml").write_text(
        playbook.replace("id: renewal-90d", "id: renewal-undefined"), encoding="utf-8"
    )
    (project / "playbooks" / "broken.yaml").write_text(BROKEN, encoding="utf-8")
    monkeypatch.chdir(project.parent)
    result = _validate()
    _assert_no_traceback(result)
    problems = _problem_lines(result)
    assert len(problems) == 2, result.output
    for m in problems:
        assert Path(m["path"]).is_file(), f"{m['path']} does not exist from {Path.cwd()}"


# --- robustness: whatever the file holds, a problem line and exit 1, never a traceback --------


def _billion_laughs() -> bytes:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    names = "abcdefghij"
    for prev, name in itertools.pairwise(names):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return ("\n".join(lines) + "\n").encode()


def _ten_megabytes() -> bytes:
    line = b"# " + b"x" * 97 + b"\n"
    return b"id: big\n" + line * 100_000


BAD_CONTENTS: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "only-comment": lambda: b"# a playbook will go here\n",
    "yaml-list": lambda: b"- id: a\n- id: b\n",
    "bare-string": lambda: b"renewal playbook\n",
    "bare-number": lambda: b"42\n",
    "null-document": lambda: b"~\n",
    "random-bytes": lambda: random.Random(0).randbytes(4096),
    "ten-megabytes": _ten_megabytes,
    "billion-laughs": _billion_laughs,
    "multi-document": lambda: b"---\nid: one\n---\nid: two\n",
    "invalid-utf8": lambda: b"id: renewal\nname: Caf\xe9 renewal\n",
    "utf16": lambda: "id: renewal\n".encode("utf-16"),
    "unclosed-quote": lambda: b'id: "renewal\nname: x\n',
    "python-tag": lambda: b"id: !!python/object/apply:os.system ['true']\n",
    "null-key": lambda: b"id: x\n~: y\n",
    "list-key": lambda: b"id: x\n? [a, b]\n: y\n",
    "bad-merge": lambda: b"id: x\n<<: 3\n",
    "impossible-date": lambda: b"id: x\nname: y\nsegment: {renewal_date: 2026-02-30}\n",
}


@pytest.mark.parametrize("kind", sorted(BAD_CONTENTS))
def test_bad_file_is_a_problem_not_a_crash(project: Path, kind: str) -> None:
    path = project / f"{kind}.yaml"
    path.write_bytes(BAD_CONTENTS[kind]())
    result = _validate(path.name)
    _assert_rejected(result, path.name)


def test_ten_megabyte_file_is_refused_by_size(project: Path) -> None:
    path = project / "big.yaml"
    path.write_bytes(_ten_megabytes())
    (problem,) = _assert_rejected(_validate(path.name), "big.yaml")
    assert (problem["line"], problem["col"]) == ("1", "1")
    assert "MB" in problem["message"]


def test_alias_bomb_is_refused(project: Path) -> None:
    path = project / "bomb.yaml"
    path.write_bytes(_billion_laughs())
    (problem,) = _assert_rejected(_validate(path.name), "bomb.yaml")
    assert "alias bomb" in problem["message"]


def test_invalid_utf8_points_at_the_byte(project: Path) -> None:
    path = project / "latin1.yaml"
    path.write_bytes(BAD_CONTENTS["invalid-utf8"]())
    (problem,) = _assert_rejected(_validate(path.name), "latin1.yaml")
    assert (problem["line"], problem["col"]) == ("2", "10")
    assert "UTF-8" in problem["message"]


def test_missing_path(project: Path) -> None:
    (problem,) = _assert_rejected(_validate("playbooks/nope.yaml"), "nope.yaml")
    assert problem["path"] == "playbooks/nope.yaml"
    assert "no such file or directory" in problem["message"]


def test_missing_playbooks_dir(project: Path) -> None:
    shutil.rmtree(project / "playbooks")
    (problem,) = _assert_rejected(_validate(), "playbooks")
    assert "no such file or directory" in problem["message"]


def test_directory_without_yaml_files(project: Path) -> None:
    empty = project / "drafts"
    empty.mkdir()
    (empty / "notes.txt").write_text("nothing yet\n", encoding="utf-8")
    (problem,) = _assert_rejected(_validate("drafts"), "drafts")
    assert "no playbook files" in problem["message"]


def test_directory_is_searched_recursively(project: Path) -> None:
    nested = project / "more" / "deeper"
    nested.mkdir(parents=True)
    (nested / "broken.yml").write_text(BROKEN, encoding="utf-8")
    _assert_rejected(_validate("more"), "broken.yml")


# --- pathological documents: one problem line, never a traceback ------------------------------


def _nested_lists() -> bytes:
    return b"[" * 10_000 + b"]" * 10_000 + b"\n"


def _nested_mappings() -> bytes:
    return b"id: x\nname: " + b"{a: " * 5_000 + b"1" + b"}" * 5_000 + b"\n"


CRASHING: dict[str, Callable[[], bytes]] = {
    "nested-lists": _nested_lists,
    "nested-mappings": _nested_mappings,
    "self-referencing-list": lambda: b"id: x\nsteps: &s [*s]\n",
    "self-referencing-mapping": lambda: b"id: x\ntrigger: &t {not: *t}\n",
}


@pytest.mark.parametrize("kind", sorted(CRASHING))
def test_deep_or_recursive_document_is_a_problem(project: Path, kind: str) -> None:
    path = project / f"{kind}.yaml"
    path.write_bytes(CRASHING[kind]())
    _assert_rejected(_validate(path.name), path.name)


def test_control_character_is_one_line_at_its_position(project: Path) -> None:
    path = project / "nul.yaml"
    path.write_bytes(b"id: renewal\nname: Re\x00newal\n")
    result = _validate(path.name)
    (problem,) = _assert_rejected(result, "nul.yaml")
    assert (problem["line"], problem["col"]) == ("2", "9")
