"""Step ids that journeys in flight can rely on when the playbook changes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from engine.load.yaml_nodes import Path
from engine.spec import EmailStep, Playbook


def unstable_step_ids(spec: Playbook) -> Iterator[tuple[Path, str]]:
    """Email steps whose default id could move to another step when the file is edited.

    With `versions.on_change: migrate`, journeys in flight find their place in the new version by
    step id. A step without an id is named after what it sends, which no edit elsewhere changes;
    but two emails with the same template are told apart only by a suffix (`-2`) that changes when
    one of them is added, removed or moved. Those steps need an id of their own.
    """
    if spec.versions.on_change != "migrate":
        return
    by_template: dict[str, list[int]] = defaultdict(list)
    for i, step in enumerate(spec.steps):
        if isinstance(step, EmailStep):
            by_template[step.email.template].append(i)
    for template, positions in by_template.items():
        if len(positions) < 2:
            continue
        for i in positions:
            if spec.steps[i].id is None:
                others = ", ".join(str(j + 1) for j in positions if j != i)
                yield (
                    ("steps", i),
                    f"step {i + 1} sends '{template}' like step {others}: with versions.on_change: migrate, "
                    "give each of them an `id:` so journeys in flight keep their place when steps are "
                    "added, removed or moved",
                )
