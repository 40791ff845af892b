"""Approvals of email content (`approvals: required` in `touchflow.yaml`).

`content.py` hashes exactly what an email step's arm sends per locale (templates, the layout, the
arm's overrides); `records.py` lists where each content stands and records approvals; `hold.py`
holds unapproved content back at dispatch. The console and `touchflow approvals` call these.
"""

from engine.approvals.content import NO_ARM, Content, ContentHasher, step_contents
from engine.approvals.hold import RECHECK_AFTER, Held, hold_unapproved
from engine.approvals.records import ApprovalStatus, all_contents, approve, approved_hashes, list_approvals

__all__ = [
    "NO_ARM",
    "RECHECK_AFTER",
    "ApprovalStatus",
    "Content",
    "ContentHasher",
    "Held",
    "all_contents",
    "approve",
    "approved_hashes",
    "hold_unapproved",
    "list_approvals",
    "step_contents",
]
