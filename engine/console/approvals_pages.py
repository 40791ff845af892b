"""Approvals in the console: where every email step × arm × locale stands, and approving it.

The list is `engine.approvals.list_approvals` over the project as its files are now: an edit of a
template, the layout or an arm's overrides changes the content's hash, so an approval of the
earlier content shows as not approved. Approving records who (the signed-in user), when and the
comment through `engine.approvals.approve`, for every locale of the arm: a marketer approves the
content they reviewed, as `touchflow approvals approve PLAYBOOK STEP [ARM] --as EMAIL` does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.responses import RedirectResponse, Response

from engine.approvals import NO_ARM, ApprovalStatus, approve, list_approvals
from engine.console.pages import SECURITY_HEADERS, PageContext
from engine.console.permissions import Page

COMMENT_LIMIT = 2000
"""The longest comment kept (a form can post anything)."""


def approvals(ctx: PageContext, message: str | None = None, error: str | None = None, status: int = 200) -> Response:
    """Every email step's content per arm and locale: approved or not, by whom, when, the comment."""
    view = ctx.console.project()
    with ctx.console.engine.connect() as conn:
        statuses = list_approvals(conn, view.playbooks.values(), view.renderer)
    groups: dict[tuple[str, str, str], list[ApprovalStatus]] = {}
    for s in statuses:
        groups.setdefault((s.content.playbook_id, s.content.step_id, s.content.arm), []).append(s)
    values: dict[str, Any] = {
        "title": "Approvals",
        "groups": groups,
        "required": view.delivery is not None and view.delivery.approvals == "required",
        "settings_error": view.settings_error,
        "message": message,
        "error": error,
    }
    return ctx.render("approvals.html", values, status=status)


def approvals_page(ctx: PageContext) -> Response:
    """GET /approvals; after an approval (`?approved=PLAYBOOK/STEP/ARM`), a notice of what it
    covers now — said only when that content is approved, so a crafted link claims nothing."""
    view = ctx.console.project()
    named = ctx.request.query_params.get("approved", "").split("/")
    if len(named) != 3:
        return approvals(ctx)
    playbook, step, arm = named
    with ctx.console.engine.connect() as conn:
        statuses = list_approvals(conn, [view.playbooks[playbook]] if playbook in view.playbooks else [], view.renderer)
    items = [s for s in statuses if (s.content.step_id, s.content.arm) == (step, arm)]
    if not items or not all(s.approved for s in items):
        return approvals(ctx)
    locales = ", ".join(sorted(s.content.locale or "default" for s in items))
    which = f"{playbook} / {step}" + (f" / {arm}" if arm else "")
    return approvals(ctx, message=f"Approved {which} ({locales}) by {items[0].approved_by}.")


def approve_content(ctx: PageContext) -> Response:
    """Approve one step's arm (every locale of it) as it is now, as the signed-in user."""
    view = ctx.console.project()
    playbook, step = ctx.form.get("playbook", ""), ctx.form.get("step", "")
    arm = ctx.form.get("arm", NO_ARM) or None
    comment = ctx.form.get("comment", "").strip()[:COMMENT_LIMIT]
    user = ctx.session.user
    try:
        with ctx.console.engine.begin() as conn:
            done = approve(
                conn,
                view.playbooks,
                view.renderer,
                playbook,
                step,
                arm,
                by=user.email,
                comment=comment,
                now=ctx.console.clock(),
            )
    except (LookupError, ValueError) as exc:
        return approvals(ctx, error=f"Nothing was approved: {exc.args[0]}", status=400)
    if not done:
        return approvals(ctx, error=f"Nothing was approved: {playbook} / {step} has no content to approve.", status=400)
    # Post/redirect/get: reloading the page must never approve again (content edited since then
    # would be approved unseen).
    where = urlencode({"approved": f"{playbook}/{step}/{arm or NO_ARM}"})
    return RedirectResponse(f"/approvals?{where}", status_code=303, headers=SECURITY_HEADERS)


PAGES = [
    Page("/approvals", approvals_page, "read", name="approvals"),
    Page("/approvals/approve", approve_content, "approve", methods=("POST",), name="approve"),
]
