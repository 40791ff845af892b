"""The plan stages, between compile and dispatch: evaluate (occurrences → enrollments,
`enroll.py`) and advance (due enrollments → ledger rows, audit rows, updates and enrollment moves,
`driver.py` with the step kinds in `steps/`), with the playbook versions journeys run on
(`versions.py`) and the time arithmetic of waits (`time.py`).

Both stages write in the caller's transaction; nothing here delivers anything.
"""

from engine.plan.batch import AdvanceResult
from engine.plan.driver import BATCH_SIZE, MAX_STEPS_PER_TICK, advance
from engine.plan.enroll import EvaluateResult, evaluate, lock_playbook
from engine.plan.ledger_rows import ledger_row, send_key
from engine.plan.time import at_date, known_zone, next_in_window, zone
from engine.plan.versions import SentInEnrollment, VersionStore, migrated_index, remember

__all__ = [
    "BATCH_SIZE",
    "MAX_STEPS_PER_TICK",
    "AdvanceResult",
    "EvaluateResult",
    "SentInEnrollment",
    "VersionStore",
    "advance",
    "at_date",
    "evaluate",
    "known_zone",
    "ledger_row",
    "lock_playbook",
    "migrated_index",
    "next_in_window",
    "remember",
    "send_key",
    "zone",
]
