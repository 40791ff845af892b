"""The playbook page's words and drawing: the describer of segments and triggers, and the SVG
journey (steps, waits, branches with their jumps, goals), escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from engine.console.describe import describe_segment, describe_trigger
from engine.console.graph import journey_svg
from engine.load import load_playbook_text

BRANCHING = """
id: branching
name: Branching <b>journey</b>
segment: {all: [{status: active}, {tier: {in: [tech_touch, low_touch]}}]}
trigger: {event: {name: signup, within: 3d}}
goal: {event: activated, within: 30d}
exit: {no_events: {name: login, within: 60d}}
steps:
  - id: hello
    email: {template: welcome/hello}
  - wait: 3d
  - id: check
    branch: {if: {events: {name: login, within: 7d, at_least: 2}}, then: call, else: nudge}
  - id: nudge
    email: {template: welcome/hello}
  - id: call
    task: {title: "Call <script>x</script>"}
"""


def _spec():  # type: ignore[no-untyped-def]
    return load_playbook_text(BRANCHING, "branching.yaml").spec


def test_segment_and_trigger_in_words() -> None:
    spec = _spec()
    assert describe_segment(spec.segment, spec.subject) == (
        "every account where (status is 'active' and tier is one of 'tech_touch', 'low_touch')"
    )
    assert describe_trigger(spec.trigger) == "when a 'signup' event happened in the last 3 days"


def test_the_journey_is_an_svg_with_every_step_the_branch_jumps_and_the_goal() -> None:
    spec = _spec()
    svg = journey_svg(spec, ["hello", "wait-3d", "check", "nudge", "call"])
    root = ET.fromstring(svg)  # well-formed: every text escaped
    ns = {"s": "http://www.w3.org/2000/svg"}
    kinds = [g.get("class") for g in root.findall("s:g", ns)]
    assert kinds == ["node trigger", "node email", "node wait", "node branch", "node email", "node task", "node goal"]
    assert len(root.findall("s:path[@class='jump']", ns)) == 2  # then and else
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert "3 days" in text and "goal: 'activated' event within 30 days" in text
    assert "<script>" not in svg and "&lt;script&gt;" in svg
