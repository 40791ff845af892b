"""A playbook's journey drawn as server-side SVG: the trigger, each step in order (emails, tasks,
waits, branches, updates, webhooks, exits), the jumps a branch makes, and the goal and exit
conditions checked before every step. Every text is escaped; no script, no external resources.
"""

from __future__ import annotations

from html import escape
from typing import Any

from engine.console.describe import describe_condition, duration
from engine.spec import playbook as p
from engine.spec import steps as s

WIDTH = 640
BOX_W = 360
BOX_H = 44
GAP = 26
LEFT = 40
COLOURS = {
    "trigger": "#e8f0fe",
    "email": "#e6f4ea",
    "task": "#fef7e0",
    "wait": "#f1f3f4",
    "branch": "#fce8e6",
    "update": "#f3e8fd",
    "webhook": "#e4f7fb",
    "exit": "#eeeeee",
    "goal": "#e6f4ea",
}


def _label(step: Any) -> tuple[str, str]:
    """(kind, what it does) of one step."""
    if isinstance(step, s.EmailStep):
        arms = step.email.experiment.arms if step.email.experiment else []
        extra = f" · {len(arms)} arms" if arms else ""
        return "email", f"{step.email.template}{extra}"
    if isinstance(step, s.TaskStep):
        return "task", step.task.title
    if isinstance(step, s.WaitStep):
        wait = step.wait
        if isinstance(wait, s.WaitUntil):
            return "wait", f"until {wait.until}"
        if isinstance(wait, s.WaitForWindow):
            return "wait", f"for {wait.window.start}–{wait.window.end} local"
        return "wait", duration(wait)
    if isinstance(step, s.BranchStep):
        return "branch", f"if {describe_condition(step.branch.if_)}"
    if isinstance(step, s.UpdateStep):
        return "update", f"{step.update.target}: " + ", ".join(step.update.set) or "tags"
    if isinstance(step, s.WebhookStep):
        return "webhook", step.webhook.url or f"${step.webhook.url_env}"
    if isinstance(step, s.ExitStep):
        return "exit", step.exit
    return "step", type(step).__name__


def _short(text: str, n: int = 48) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def journey_svg(spec: p.Playbook, step_ids: list[str]) -> str:
    """The journey of `spec` (its steps' ids in `step_ids`) as an `<svg>` element."""
    nodes: list[tuple[str, str, str]] = [("trigger", "trigger", "enters")]
    for step, sid in zip(spec.steps, step_ids, strict=True):
        kind, text = _label(step)
        nodes.append((kind, sid, text))
    y_of = {sid: 20 + (i + 1) * (BOX_H + GAP) for i, sid in enumerate(step_ids)}
    height = 20 + (len(nodes) + 1) * (BOX_H + GAP) + 20
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="journey" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="journey of {escape(spec.id)}">',
        '<defs><marker id="arrow" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>',
    ]
    for i, (kind, sid, text) in enumerate(nodes):
        y = 20 + i * (BOX_H + GAP)
        rx = 20 if kind == "wait" else 4
        out.append(
            f'<g class="node {kind}"><rect x="{LEFT}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="{rx}" '
            f'fill="{COLOURS.get(kind, "#fff")}" stroke="#888"/>'
            f'<text x="{LEFT + 10}" y="{y + 18}" font-size="12" font-weight="bold">'
            f"{escape(kind)} · {escape(_short(sid, 40))}</text>"
            f'<text x="{LEFT + 10}" y="{y + 35}" font-size="12">{escape(_short(text))}</text></g>'
        )
        if i + 1 < len(nodes) and kind != "exit":
            out.append(
                f'<line x1="{LEFT + BOX_W // 2}" y1="{y + BOX_H}" x2="{LEFT + BOX_W // 2}" y2="{y + BOX_H + GAP}" '
                'stroke="#555" marker-end="url(#arrow)"/>'
            )
    for step, sid in zip(spec.steps, step_ids, strict=True):
        if not isinstance(step, s.BranchStep):
            continue
        for label, target, dx in (("then", step.branch.then, 40), ("else", step.branch.else_, 80)):
            if target is None or target not in y_of:
                continue
            y1, y2, x = y_of[sid] + BOX_H // 2, y_of[target] + BOX_H // 2, LEFT + BOX_W + dx
            out.append(
                f'<path class="jump" d="M{LEFT + BOX_W},{y1} H{x} V{y2} H{LEFT + BOX_W}" fill="none" stroke="#c5221f" '
                f'marker-end="url(#arrow)"/><text x="{x + 4}" y="{(y1 + y2) // 2}" font-size="11">{label}</text>'
            )
    y = 20 + len(nodes) * (BOX_H + GAP)
    checks = []
    if spec.goal is not None:
        goal = spec.goal
        what = (
            f"'{goal.event}' event{'' if goal.within is None else ' within ' + duration(goal.within)}"
            if goal.event
            else (describe_condition(goal.condition))
        )
        checks.append(f"goal: {what}")
    if spec.exit_ is not None:
        checks.append(f"exit: {describe_condition(spec.exit_)}")
    text = " · ".join(checks) or "no goal or exit condition"
    out.append(
        f'<g class="node goal"><rect x="{LEFT}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="4" '
        f'fill="{COLOURS["goal"]}" '
        f'stroke="#888" stroke-dasharray="4 3"/><text x="{LEFT + 10}" y="{y + 18}" font-size="12" font-weight="bold">'
        f'checked before every step</text><text x="{LEFT + 10}" y="{y + 35}" font-size="12">'
        f"{escape(_short(text, 56))}</text></g>"
    )
    out.append("</svg>")
    return "".join(out)
