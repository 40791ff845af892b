"""`promote`: the winning arm gets all the weight, and only the weight lines of the file change."""

from __future__ import annotations

import difflib
import os
import re
import stat
from pathlib import Path

import pytest

from engine.experiments import promote as promote_module
from engine.experiments.promote import ArmWeight, PromoteError, promote
from engine.load import load_playbook

PLAYBOOK = """\
# yaml-language-server: $schema=../schemas/playbook.schema.json
# The one-year anniversary: which subject line thanks best?
id: anniversary
name: Customer anniversary — thank you
owner: marketing@touchflow.example
trigger: {date: contract_start, every_year: true, window: 3d}
steps:
  - wait: 1d                       # let the renewal dust settle
  - id: anniversary-email          # optional; default id is "email-anniversary-thanks"
    email:
      to: {role: [admin]}
      template: anniversary/thanks
      experiment:
        metric: clicked
        arms:
          - {id: a, weight: 45}            # comment kept
          - id: b
            weight: 45
            subject: "{{ account.name }}, one year together"
          - {id: holdout, weight: 10, holdout: true}

  # a second experiment, on a step without an id
  - email:
      to: {role: ['champion']}
      from: csm
      template: anniversary/thanks
      experiment:
        arms:
          - id: short
            subject: 'One year!'   # no weight: the default, 1
          - id: long
            weight: 2.5
            subject: >-
              {{ account.name }}, thank you for a year
              of working together
          - {id: quiet}
  - exit: thanked
"""


@pytest.fixture
def playbook(tmp_path: Path) -> Path:
    path = tmp_path / "anniversary.yaml"
    path.write_text(PLAYBOOK, encoding="utf-8")
    return path


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """The removed and the added lines of a diff of before → after."""
    removed: list[str] = []
    added: list[str] = []
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    for line in diff:
        if line.startswith(("---", "+++", "@@")):
            continue
        (removed if line.startswith("-") else added).append(line[1:])
    return removed, added


def without_weights(lines: list[str]) -> list[str]:
    """The lines with every `weight: N` taken out and spaces squeezed; lines that held only a weight go."""
    kept = [" ".join(re.sub(r",? *weight: *[0-9.]+", "", line).split()) for line in lines]
    return [line for line in kept if line]


def assert_only_weight_lines(before: str, after: str) -> None:
    """Every changed line holds a weight, and differs from its old self only in the weights."""
    removed, added = changed_lines(before, after)
    assert added, "nothing changed"
    assert all("weight:" in line for line in added), added
    assert without_weights(removed) == without_weights(added), (removed, added)


def weights_of(path: Path, step: int) -> dict[str, float]:
    experiment = load_playbook(path).spec.steps[step].email.experiment  # type: ignore[union-attr]
    assert experiment is not None
    return {a.id: a.weight for a in experiment.arms}


# -- promoting --------------------------------------------------------------------------------------


def test_promote_by_id_changes_exactly_the_weight_lines(playbook: Path) -> None:
    result = promote(playbook, "anniversary-email", "b")

    after = playbook.read_text(encoding="utf-8")
    removed, added = changed_lines(PLAYBOOK, after)
    assert removed == [
        "          - {id: a, weight: 45}            # comment kept",
        "            weight: 45",
        "          - {id: holdout, weight: 10, holdout: true}",
    ]
    assert added == [
        "          - {id: a, weight: 0}             # comment kept",
        "            weight: 100",
        "          - {id: holdout, weight: 0, holdout: true}",
    ]
    assert weights_of(playbook, 1) == {"a": 0, "b": 100, "holdout": 0}
    assert result.path == playbook
    assert result.step == "anniversary-email"
    assert result.arm == "b"
    assert result.changed
    assert result.weights == (
        ArmWeight("a", 45, 0),
        ArmWeight("b", 45, 100),
        ArmWeight("holdout", 10, 0, holdout=True),
    )


def test_promote_by_default_id_inserts_missing_weights(playbook: Path) -> None:
    result = promote(playbook, "email-3", "short")

    after = playbook.read_text(encoding="utf-8")
    removed, added = changed_lines(PLAYBOOK, after)
    assert removed == ["            weight: 2.5", "          - {id: quiet}"]
    assert added == [
        "            weight: 100",
        "            weight: 0",
        "          - {id: quiet, weight: 0}",
    ]
    # The inserted weight sits right under the arm's id, before its other keys and comments.
    assert "          - id: short\n            weight: 100\n            subject: 'One year!'   # no weight" in after
    assert weights_of(playbook, 2) == {"short": 100, "long": 0, "quiet": 0}
    assert weights_of(playbook, 1) == {"a": 45, "b": 45, "holdout": 10}  # the other experiment is untouched
    assert result.step == "email-anniversary-thanks"
    assert [(w.arm, w.old, w.new) for w in result.weights] == [
        ("short", None, 100),
        ("long", 2.5, 0),
        ("quiet", None, 0),
    ]


def test_a_step_with_an_id_can_also_be_named_by_its_position(playbook: Path) -> None:
    result = promote(playbook, "email-2", "a")
    assert result.step == "anniversary-email"
    assert weights_of(playbook, 1) == {"a": 100, "b": 0, "holdout": 0}


def test_the_holdout_goes_to_zero(playbook: Path) -> None:
    result = promote(playbook, "anniversary-email", "a")
    holdout = next(w for w in result.weights if w.arm == "holdout")
    assert (holdout.old, holdout.new, holdout.holdout) == (10, 0, True)
    assert "- {id: holdout, weight: 0, holdout: true}" in playbook.read_text(encoding="utf-8")


def test_every_diff_is_only_weight_lines(playbook: Path) -> None:
    for step, arm in [("anniversary-email", "a"), ("anniversary-email", "holdout"), ("email-3", "long")]:
        playbook.write_text(PLAYBOOK, encoding="utf-8")
        promote(playbook, step, arm)
        assert_only_weight_lines(PLAYBOOK, playbook.read_text(encoding="utf-8"))


def test_promoting_twice_is_idempotent(playbook: Path) -> None:
    promote(playbook, "email-3", "long")
    once = playbook.read_bytes()
    stamp = playbook.stat().st_mtime_ns

    again = promote(playbook, "email-3", "long")

    assert playbook.read_bytes() == once
    assert playbook.stat().st_mtime_ns == stamp  # not even rewritten
    assert not again.changed
    assert [(w.old, w.new) for w in again.weights] == [(0, 0), (100, 100), (0, 0)]
    assert "unchanged" in again.describe()


def test_promoting_another_arm_afterwards_moves_the_weight(playbook: Path) -> None:
    promote(playbook, "anniversary-email", "a")
    promote(playbook, "anniversary-email", "b")
    assert weights_of(playbook, 1) == {"a": 0, "b": 100, "holdout": 0}
    assert_only_weight_lines(PLAYBOOK, playbook.read_text(encoding="utf-8"))


def test_describe_lists_every_arm(playbook: Path) -> None:
    text = promote(playbook, "email-3", "short").describe()
    assert "step 'email-anniversary-thanks', arm 'short' promoted" in text
    assert "short: unset (1) → 100" in text
    assert "long: 2.5 → 0" in text


# -- formatting ruamel.yaml alone would not keep -------------------------------------------------------

ODD = """\
# comment before the document start
---
id: odd
name: Odd formatting<TRAILING SPACES>
trigger: {date: contract_start}
owner: ~
steps:
- email:
    to:   {role: [admin]}
    template: odd/one
    experiment:
      arms: [{id: a, weight: 1}, {id: b}]   # a flow list on one line
- email:
    to: {role: [admin]}
    template: odd/two
    experiment:
      arms:
      -   id: x
          weight: 3
      - id: y
...
""".replace("<TRAILING SPACES>", "    ")


def test_formatting_outside_the_weight_lines_is_kept_byte_for_byte(tmp_path: Path) -> None:
    path = tmp_path / "odd.yaml"
    path.write_text(ODD, encoding="utf-8")

    promote(path, "email-1", "b")
    promote(path, "email-2", "y")

    after = path.read_text(encoding="utf-8")
    removed, added = changed_lines(ODD, after)
    assert removed == ["      arms: [{id: a, weight: 1}, {id: b}]   # a flow list on one line", "          weight: 3"]
    assert added == [
        "      arms: [{id: a, weight: 0}, {id: b, weight: 100}] # a flow list on one line",
        "          weight: 0",
        "        weight: 100",
    ]
    assert after.startswith("# comment before the document start\n---\n")
    assert "name: Odd formatting    \n" in after and "owner: ~\n" in after and after.endswith("...\n")


def test_crlf_bom_and_no_final_newline_are_kept(tmp_path: Path) -> None:
    text = (
        "id: crlf\r\nname: CRLF\r\ntrigger: {date: d}\r\nsteps:\r\n  - email:\r\n      template: t\r\n"
        "      to: {role: [admin]}\r\n      experiment:\r\n        arms:\r\n          - id: a\r\n          - id: b"
    )
    path = tmp_path / "crlf.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())

    promote(path, "email-1", "b")

    expected = text.replace("- id: a\r\n", "- id: a\r\n            weight: 0\r\n") + "\r\n            weight: 100"
    assert path.read_bytes() == b"\xef\xbb\xbf" + expected.encode()


def test_four_space_indentation(tmp_path: Path) -> None:
    text = (
        "id: wide\nname: Wide\ntrigger: {date: d}\nsteps:\n    -   id: mail\n        email:\n"
        "            template: t\n            to: {role: [admin]}\n            experiment:\n                arms:\n"
        "                    -   id: a   # first\n                        weight: 5\n"
        "                    -   id: b   # second\n"
    )
    path = tmp_path / "wide.yaml"
    path.write_text(text, encoding="utf-8")

    promote(path, "mail", "b")

    assert path.read_text(encoding="utf-8") == text.replace("weight: 5", "weight: 0").replace(
        "id: b   # second\n", "id: b   # second\n                        weight: 100\n"
    )


def test_a_flow_arm_over_several_lines_becomes_one_line(tmp_path: Path) -> None:
    text = (
        "id: f\nname: F\ntrigger: {date: d}\nsteps:\n  - email:\n      template: t\n      to: {role: [admin]}\n"
        "      experiment:\n        arms:\n          - {id: a,\n             weight: 5\n            }  # spread out\n"
        "          - {id: b}\n  - exit: done\n"
    )
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")

    promote(path, "email-1", "b")

    assert path.read_text(encoding="utf-8") == text.replace(
        "{id: a,\n             weight: 5\n            }  # spread out", "{id: a, weight: 0} # spread out"
    ).replace("{id: b}", "{id: b, weight: 100}")


# -- the file is written atomically --------------------------------------------------------------------


def test_write_replaces_the_file_and_keeps_its_mode(playbook: Path) -> None:
    playbook.chmod(0o640)
    inode = playbook.stat().st_ino

    promote(playbook, "anniversary-email", "b")

    assert playbook.stat().st_ino != inode  # a new file moved into place, not written in place
    assert stat.S_IMODE(playbook.stat().st_mode) == 0o640
    assert sorted(p.name for p in playbook.parent.iterdir()) == ["anniversary.yaml"]  # no temporary left


def test_a_symlink_keeps_pointing_at_the_playbook(playbook: Path) -> None:
    link = playbook.parent / "link.yaml"
    link.symlink_to(playbook.name)

    promote(link, "anniversary-email", "b")

    assert link.is_symlink()
    assert weights_of(playbook, 1) == {"a": 0, "b": 100, "holdout": 0}


def test_a_failed_write_leaves_the_file_and_no_temporary(playbook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PromoteError, match="cannot write the file: Permission denied"):
        promote(playbook, "anniversary-email", "b")
    assert playbook.read_text(encoding="utf-8") == PLAYBOOK
    assert sorted(p.name for p in playbook.parent.iterdir()) == ["anniversary.yaml"]


def test_a_file_changed_meanwhile_is_not_overwritten(playbook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    check = promote_module._check
    edited = PLAYBOOK.replace("owner: marketing", "owner: sales")

    def edit_meanwhile(*args: object, **kwargs: object) -> None:
        check(*args, **kwargs)  # type: ignore[arg-type]
        playbook.write_text(edited, encoding="utf-8")

    monkeypatch.setattr(promote_module, "_check", edit_meanwhile)
    with pytest.raises(PromoteError, match="changed while promoting"):
        promote(playbook, "anniversary-email", "b")
    assert playbook.read_text(encoding="utf-8") == edited


# -- errors: a clear message, and the file is not touched ------------------------------------------


@pytest.mark.parametrize(
    ("step", "arm", "message"),
    [
        (
            "aniversary-email",
            "b",
            r"no step 'aniversary-email' \(did you mean 'anniversary-email'\?\); "
            r"the steps of this playbook are: wait-1d, anniversary-email, email-anniversary-thanks, exit-thanked",
        ),
        ("wait-1", "a", r"anniversary\.yaml:8: step 'wait-1d' is a wait step; only email steps have experiments"),
        ("exit-thanked", "a", r"anniversary\.yaml:37: step 'exit-thanked' is an exit step"),
        (
            "anniversary-email",
            "c",
            r"anniversary\.yaml:15: the experiment of step 'anniversary-email' has no arm 'c'; its arms: a, b, holdout",
        ),
        ("email-3", "shrot", r"has no arm 'shrot' \(did you mean 'short'\?\); its arms: short, long, quiet"),
    ],
)
def test_unknown_step_or_arm(playbook: Path, step: str, arm: str, message: str) -> None:
    with pytest.raises(PromoteError, match=message):
        promote(playbook, step, arm)
    assert playbook.read_text(encoding="utf-8") == PLAYBOOK


def test_an_email_step_without_experiment(tmp_path: Path) -> None:
    path = tmp_path / "plain.yaml"
    text = (
        "id: plain\nname: Plain\ntrigger: {date: d}\nsteps:\n"
        "  - wait: 1d\n  - email: {template: t, to: {role: [admin]}}\n"
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromoteError, match=r"plain\.yaml:6: email step 'email-t' has no experiment"):
        promote(path, "email-2", "a")
    assert path.read_text(encoding="utf-8") == text


def test_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PromoteError, match=r"nope\.yaml: no such file"):
        promote(tmp_path / "nope.yaml", "email-1", "a")
    assert list(tmp_path.iterdir()) == []


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(PromoteError, match="is a directory"):
        promote(tmp_path, "email-1", "a")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- just\n- a list\n", r"(?s)not a valid playbook.*a playbook is a mapping"),
        ("id: x\nname: [unclosed\n", r"(?s)not a valid playbook.*YAML syntax"),
        ("title: a shopping list\nitems: [milk]\n", r"(?s)not a valid playbook.*x\.yaml:1:1: error:"),
        ("", r"(?s)not a valid playbook.*file is empty"),
    ],
)
def test_not_a_playbook(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromoteError, match=message) as caught:
        promote(path, "email-1", "a")
    assert "touchflow validate" in str(caught.value)
    assert path.read_text(encoding="utf-8") == text


def test_an_invalid_result_is_not_written(playbook: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(promote_module, "WINNER_WEIGHT", -1)  # weights must be >= 0
    with pytest.raises(PromoteError, match=r"would make the playbook invalid, so nothing was written.*weight"):
        promote(playbook, "anniversary-email", "b")
    assert playbook.read_text(encoding="utf-8") == PLAYBOOK


def test_an_experiment_shared_through_an_alias_is_refused(tmp_path: Path) -> None:
    text = (
        "id: shared\nname: Shared\ntrigger: {date: d}\nsteps:\n"
        "  - email:\n      template: t\n      to: {role: [admin]}\n      experiment: &split\n"
        "        arms: [{id: a}, {id: b}]\n"
        "  - email:\n      template: u\n      to: {role: [admin]}\n      experiment: *split\n"
    )
    path = tmp_path / "shared.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromoteError, match=r"shared\.yaml:8: .*anchor and alias"):
        promote(path, "email-1", "a")
    assert path.read_text(encoding="utf-8") == text


def test_an_aliased_weight_is_refused(tmp_path: Path) -> None:
    text = (
        "id: w\nname: W\ntrigger: {date: d}\nsteps:\n  - email:\n      template: t\n      to: {role: [admin]}\n"
        "      experiment:\n        arms:\n          - {id: a, weight: &half 50}\n          - {id: b, weight: *half}\n"
    )
    path = tmp_path / "w.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PromoteError, match=r"w\.yaml:10: the weight of arm 'a'.*&half"):
        promote(path, "email-1", "b")
    assert path.read_text(encoding="utf-8") == text


def test_nothing_is_left_behind_after_errors(playbook: Path) -> None:
    for step, arm in [("nope", "a"), ("wait-1", "a"), ("anniversary-email", "nope")]:
        with pytest.raises(PromoteError):
            promote(playbook, step, arm)
    assert sorted(os.listdir(playbook.parent)) == ["anniversary.yaml"]
    assert playbook.read_text(encoding="utf-8") == PLAYBOOK
