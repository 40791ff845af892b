"""A corpus of broken playbooks, each with the problems `touchflow validate` should report.

Every file in `corpus/` starts with header comments:

    # expect: LINE:COL: substring of the message
    # expect: broken/syntax.en.html:LINE:COL: substring   (a problem in a template file)
    # xfail: why the engine does not say this yet

LINE and COL are 1-based positions in the whole file, header included. A template path is
relative to the templates directory the corpus is validated against: the project's own
templates plus the broken ones of `corpus_templates/`. A file
with an `xfail` line is a known engine shortcoming: its test fails strictly until the engine says
what an author should see.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from _pytest.mark.structures import ParameterSet

from engine.problems import Problem
from engine.render import EmailRenderer
from engine.render.templates import template_problems
from engine.validate import validate_paths

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CORPUS = HERE / "corpus"
BROKEN_TEMPLATES = HERE / "corpus_templates"


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's own templates plus the deliberately broken ones under `broken/`."""
    folder = tmp_path_factory.mktemp("templates") / "email"
    shutil.copytree(REPO / "templates" / "email", folder)
    shutil.copytree(BROKEN_TEMPLATES, folder, dirs_exist_ok=True)
    return folder


_EXPECT = re.compile(r"^# expect: (?:(?P<path>[^:\s]+\.html):)?(?P<line>\d+):(?P<col>\d+): (?P<text>.+)$")
_XFAIL = re.compile(r"^# xfail: (?P<reason>.+)$")


@dataclass(frozen=True)
class Expected:
    """One expected problem: in the playbook itself (template None) or in a template file."""

    template: str | None
    line: int
    col: int
    text: str

    def matches(self, problem: Problem, playbook: str) -> bool:
        return (
            self.same_file(problem, playbook)
            and (problem.line, problem.col) == (self.line, self.col)
            and self.text in problem.message
        )

    def same_file(self, problem: Problem, playbook: str) -> bool:
        if self.template is None:
            return problem.path == playbook
        return Path(problem.path).as_posix().endswith(f"/{self.template}")

    def __str__(self) -> str:
        where = f"{self.template}:" if self.template else ""
        return f"{where}{self.line}:{self.col}: {self.text}"


@dataclass(frozen=True)
class Case:
    path: Path
    expected: tuple[Expected, ...]
    xfail: str | None


def _read_case(path: Path) -> Case:
    expected: list[Expected] = []
    xfail: str | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        if not raw.startswith("#"):
            break
        if m := _EXPECT.match(raw):
            expected.append(Expected(m["path"], int(m["line"]), int(m["col"]), m["text"]))
        elif m := _XFAIL.match(raw):
            xfail = m["reason"]
    return Case(path, tuple(expected), xfail)


CORPUS_FILES = sorted(CORPUS.glob("*.yaml"))
CASES = [_read_case(path) for path in CORPUS_FILES]


def _param(case: Case) -> ParameterSet:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.path.stem, marks=marks)


def _formatted(problems: list[Problem]) -> str:
    return "\n".join(p.format() for p in problems) or "(no problems)"


def test_corpus_is_large_and_every_file_has_expectations() -> None:
    assert len(CASES) >= 25
    for case in CASES:
        assert case.expected, f"{case.path.name}: no '# expect: LINE:COL: text' header"


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_broken_playbook_reports_expected_problems(case: Case, templates: Path) -> None:
    report = validate_paths([case.path], templates, CORPUS)
    shown = _formatted(report.problems)
    assert not report.ok, f"{case.path.name} validated clean"
    assert report.files == 1
    assert not report.playbooks
    for want in case.expected:
        assert any(want.matches(p, case.path.name) for p in report.problems), f"expected {want}\ngot:\n{shown}"
    # One deliberate mistake at one place: nothing else should be reported elsewhere.
    places = {(e.template, e.line) for e in case.expected}
    if len(places) == 1:
        (want_line,) = {e.line for e in case.expected}
        for problem in report.problems:
            assert case.expected[0].same_file(problem, case.path.name), f"unexpected file:\n{shown}"
            assert problem.line == want_line, f"unexpected problem line:\n{shown}"


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_problems_are_one_line_each(path: Path, templates: Path) -> None:
    report = validate_paths([path], templates, CORPUS)
    assert report.problems
    for problem in report.problems:
        text = problem.format()
        assert "\n" not in text and "\r" not in text, text
        assert problem.line >= 1 and problem.col >= 1, text
        assert "Traceback" not in text


def test_corpus_templates_outside_broken_are_clean(templates: Path) -> None:
    """Only `broken/` templates are broken: the others must not add noise to the corpus."""
    renderer = EmailRenderer(templates)
    names = sorted({p.relative_to(templates).as_posix().split(".")[0] for p in templates.rglob("*.html")})
    names = [n for n in names if not n.startswith("_")]
    assert "renewal/plan" in names
    for name in names:
        found = template_problems(renderer, name)
        if name.startswith("broken/"):
            assert found, f"{name} should be broken"
        else:
            assert not found, _formatted(found)


PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yaml"))


@pytest.mark.parametrize("path", PLAYBOOKS, ids=[p.stem for p in PLAYBOOKS])
def test_example_playbook_is_valid(path: Path) -> None:
    report = validate_paths([path], REPO / "templates" / "email", REPO)
    assert report.ok, _formatted(report.problems)
    assert [p.path for p in report.playbooks] == [f"playbooks/{path.name}"]


def test_all_example_playbooks_are_valid_together() -> None:
    report = validate_paths([REPO / "playbooks"], REPO / "templates" / "email", REPO)
    assert report.ok, _formatted(report.problems)
    assert report.files == len(PLAYBOOKS) >= 1
    assert len({p.spec.id for p in report.playbooks}) == len(PLAYBOOKS)
