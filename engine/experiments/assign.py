"""Sticky, deterministic arm assignment: a hash of the experiment id and the subject.

The same subject always lands in the same arm of the same experiment — across ticks, processes
and playbook versions — without storing anything first; the assignment is then recorded on the
ledger row (`variant`) and in the audit. Changing the experiment's `id` re-draws everyone (a
reset). Changing weights (e.g. `experiments promote`) applies to messages planned from then on
under the new version: rows already planned keep their arm, and enrollments in flight follow
the playbook's `versions.on_change` (with `continue`, the version — and weights — they entered with).
"""

from __future__ import annotations

import hashlib

from engine.spec.steps import Arm, Experiment


def experiment_id(experiment: Experiment, playbook_id: str, step_id: str) -> str:
    """The experiment's id: its own, else `<playbook>.<step>`."""
    return experiment.id or f"{playbook_id}.{step_id}"


def bucket(experiment_key: str, subject: str) -> float:
    """A uniform number in [0, 1) fixed by the experiment and the subject."""
    digest = hashlib.sha256(f"{experiment_key}\0{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign(experiment: Experiment, experiment_key: str, subject: str) -> Arm:
    """The arm of `subject` (e.g. `account:42`): arms take consecutive slices of [0, 1) in their
    written order, each as wide as its share of the total weight."""
    total = sum(arm.weight for arm in experiment.arms)
    point = bucket(experiment_key, subject) * total
    edge = 0.0
    weighted = [arm for arm in experiment.arms if arm.weight > 0]
    for arm in weighted:
        edge += arm.weight
        if point < edge:
            return arm
    return weighted[-1]  # rounding at the very top of the range
