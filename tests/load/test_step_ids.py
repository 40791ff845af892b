"""Default step ids come from what a step does, so editing other steps never renames it."""

from __future__ import annotations

import re

import pytest

from engine.load import load_playbook_text
from engine.spec import step_ids
from engine.spec.steps import IDENTIFIER

HEAD = "id: ids\nname: Ids\ntrigger: {plan: ids}\nsteps:\n"
STEPS = [
    "  - email: {to: {role: [admin]}, template: welcome/hello}\n",
    "  - wait: 7d\n",
    '  - task: {title: "Call {{ account.name }}"}\n',
    "  - wait: {until: renewal_date, offset: -30d}\n",
    "  - email: {to: {role: [admin]}, template: renewal/plan}\n",
    '  - webhook: {url: "https://hooks.example/x"}\n',
    "  - update: {tag: [nudged]}\n",
    "  - branch: {if: {tier: tech_touch}, then: email-renewal-plan}\n",
    "  - exit: done\n",
]
INSERTED = '  - task: {title: "Something new"}\n'


def ids_of(steps: list[str]) -> dict[str, str]:
    """Step text → its id."""
    spec = load_playbook_text(HEAD + "".join(steps), "ids.yaml").spec
    return dict(zip(steps, step_ids(spec.steps), strict=True))


def test_default_ids_name_what_the_step_does() -> None:
    ids = list(ids_of(STEPS).values())
    assert ids[:2] == ["email-welcome-hello", "wait-1w"]
    assert ids[4] == "email-renewal-plan"
    kinds = ["email", "wait", "task", "wait", "email", "webhook", "update", "branch", "exit"]
    for sid, kind in zip(ids, kinds, strict=True):
        assert sid.startswith(f"{kind}-") and re.match(IDENTIFIER, sid), sid
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("where", range(len(STEPS) + 1))
def test_inserting_a_step_anywhere_renames_no_other_step(where: int) -> None:
    before = ids_of(STEPS)
    after = ids_of([*STEPS[:where], INSERTED, *STEPS[where:]])
    assert {text: after[text] for text in STEPS} == before


@pytest.mark.parametrize("where", range(len(STEPS)))
def test_removing_or_moving_a_step_renames_no_other_step(where: int) -> None:
    before = ids_of(STEPS)
    removed = ids_of(STEPS[:where] + STEPS[where + 1 :])
    assert removed == {text: before[text] for text in removed}
    moved = ids_of([STEPS[where], *STEPS[:where], *STEPS[where + 1 :]])
    assert moved == before


def test_repeats_get_a_suffix_and_explicit_ids_are_never_taken() -> None:
    steps = [
        "  - wait: 7d\n",
        "  - id: wait-1w\n    wait: 1d\n",  # an explicit id that the 7-day waits would have had
        "  - email: {to: {role: [billing]}, template: billing/overdue}\n",
        "  - wait: 7d\n",
        "  - email: {to: {role: [billing]}, template: billing/overdue}\n",
        "  - task: {title: Call now}\n",
        "  - task: {title: Call now!}\n",  # another task with the same readable name
    ]
    spec = load_playbook_text(HEAD + "".join(steps), "ids.yaml").spec
    ids = step_ids(spec.steps)
    assert ids[1:3] == ["wait-1w", "email-billing-overdue"]
    assert re.fullmatch(r"wait-[0-9a-f]{8}", ids[0])  # named by its content's hash
    assert ids[3] == f"{ids[0]}-2"  # the same wait again
    assert ids[4] == "email-billing-overdue-2"
    assert all(re.fullmatch(r"task-[0-9a-f]{8}", sid) for sid in ids[5:])  # neither takes "task-call-now"
    assert len(set(ids)) == len(ids)
    moved = load_playbook_text(HEAD + "".join([steps[6], *steps[:6]]), "ids.yaml").spec
    assert step_ids(moved.steps) == [ids[6], *ids[:6]]  # the hash does not depend on the order


def test_a_korean_title_is_named_by_its_hash() -> None:
    (sid,) = ids_of(['  - task: {title: "{{ account.name }} 갱신 전화"}\n']).values()
    assert re.fullmatch(r"task-[0-9a-f]{8}", sid)
