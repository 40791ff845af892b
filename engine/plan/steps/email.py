"""The email step: one ledger row per recipient (the subject contact, or the account's contacts
with the step's roles), planned, or skipped with the reason (an invalid or unreadable address,
the suppression list, a template the recipient already has in this enrollment), and the
experiment arm each subject falls in, holdouts included.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

from engine.addresses import email_problem
from engine.audit import Decision, Reason
from engine.compile import CompiledPlaybook, CompiledStep
from engine.experiments.assign import assign, experiment_id
from engine.plan.batch import Walk
from engine.plan.ledger_rows import ledger_row, send_key
from engine.spec import EmailStep
from engine.spec.steps import Arm, EmailAction
from engine.suppression import reason_for


def email(walk: Walk, step: CompiledStep, spec: EmailStep, index: int) -> int:
    """Plan the step's emails and go on to the next step."""
    _plan_email(walk, step, spec)
    return index + 1


def _plan_email(walk: Walk, step: CompiledStep, spec: EmailStep) -> None:
    playbook, enrollment, batch = walk.playbook, walk.enrollment, walk.batch
    owner = enrollment.subject_id if enrollment.subject_type == "contact" else enrollment.account_id
    people = batch.recipients.get(owner, [])
    if spec.email.to is not None:
        roles = set(spec.email.to.role)
        people = [p for p in people if p.role in roles]
    if not people:
        walk.plan.result.skipped += 1
        wanted = ", ".join(spec.email.to.role) if spec.email.to else "the contact"
        walk.audit(
            step, Decision.SKIPPED, Reason.NO_RECIPIENTS, f"no contact with role {wanted}", channel=batch.channel
        )
        return
    experiment = spec.email.experiment
    arm = None
    subject = f"{enrollment.subject_type}:{enrollment.subject_id}"
    if experiment is not None:
        arm = assign(experiment, experiment_id(experiment, playbook.id, step.id), subject)
    held_by = _held_out_by(playbook, subject)
    if held_by is not None and (arm is None or not arm.holdout):
        # A holdout measures sending nothing at all: its subjects get none of this playbook's
        # emails, the later ones (a follow-up, a reminder) included.
        for person in people:
            key = send_key(playbook.id, step.id, enrollment, f"contact:{person.id}")
            _hold_out(walk, step, person, key, held_by)
        return
    payload = email_payload(spec.email, arm)
    not_before = batch.now + arm.delay if arm is not None and arm.delay is not None else None
    for person in people:
        key = send_key(playbook.id, step.id, enrollment, f"contact:{person.id}")
        if arm is not None and arm.holdout:
            _hold_out(walk, step, person, key, arm.id)
            continue
        problem = email_problem(person.email)
        why_not = batch.suppressed.get((person.email or "").strip().lower())
        reason = Reason.INVALID_EMAIL
        if person.id in batch.unreadable:  # a contact row that cannot be read costs its own delivery
            problem, reason = batch.unreadable[person.id], Reason.UNREADABLE_ROW
        if problem is None and why_not is not None:
            problem, reason = (
                f"{person.email} is on the suppression list ({why_not})",
                reason_for(why_not),
            )
        if already := batch.sent.earlier(playbook, step, enrollment.id, person.id):
            # An edit gave a step that already sent this a new id (and so a new send key).
            problem, reason = (
                f"the recipient already has '{spec.email.template}' in this enrollment "
                f"(step {', '.join(repr(s) for s in already)}): not sent again",
                Reason.ALREADY_SENT_IN_ENROLLMENT,
            )
        variant = arm.id if arm is not None else None
        walk.plan.ledger.append(
            ledger_row(
                key=key,
                kind="email",
                channel=batch.channel,
                status="skipped" if problem else "planned",
                playbook=playbook,
                step_id=step.id,
                enrollment=enrollment,
                contact_id=person.id,
                payload=payload,
                now=batch.now,
                variant=variant,
                not_before=not_before,
                error=problem,
            )
        )
        if problem:
            walk.plan.result.skipped += 1
            walk.audit(
                step,
                Decision.SKIPPED,
                reason,
                problem,
                channel=batch.channel,
                send_key=key,
                variant=variant,
                contact_id=person.id,
            )
        else:
            walk.plan.result.emails_planned += 1
            batch.sent.add(enrollment.id, person.id, step.id, spec.email.template)


def email_payload(email: EmailAction, arm: Arm | None) -> dict[str, Any]:
    """What a ledger row of this email carries to dispatch (template, sender, subject override),
    for a recipient in `arm`; `preview` renders arms from the same payload."""
    # `step_template` is what the step sends whatever the arm: what a later version must not repeat.
    template = email.template
    payload: dict[str, Any] = {"template": template, "from": email.from_, "step_template": template}
    if arm is not None:
        # The arm's overrides travel in the payload, like the step itself: dispatch reads no file.
        payload |= {"template": arm.template or template, "from": arm.from_ or email.from_}
        if arm.subject is not None:
            payload["subject"] = arm.subject
    return payload


def _held_out_by(playbook: CompiledPlaybook, subject: str) -> str | None:
    """The holdout arm `subject` falls in, in any experiment of the playbook (assignment is a pure
    function of the experiment and the subject, so no lookup is needed)."""
    for step in playbook.steps:
        experiment = step.spec.email.experiment if isinstance(step.spec, EmailStep) else None
        if experiment is not None and any(a.holdout for a in experiment.arms):
            arm = assign(experiment, experiment_id(experiment, playbook.id, step.id), subject)
            if arm.holdout:
                return arm.id
    return None


def _hold_out(walk: Walk, step: CompiledStep, person: Row[Any], key: str, arm: str) -> None:
    """A holdout recipient: a ledger row that never goes out (`held_out`), tracked for the report."""
    walk.plan.ledger.append(
        ledger_row(
            key=key,
            kind="email",
            channel=walk.batch.channel,
            status="held_out",
            playbook=walk.playbook,
            step_id=step.id,
            enrollment=walk.enrollment,
            contact_id=person.id,
            payload={},
            now=walk.now,
            variant=arm,
        )
    )
    walk.audit(
        step,
        Decision.SKIPPED,
        Reason.HOLDOUT,
        f"holdout arm '{arm}': receives none of this playbook's emails, tracked for the experiment",
        channel=walk.batch.channel,
        send_key=key,
        variant=arm,
        contact_id=person.id,
    )
