"""The console: a server-rendered web face of Touchflow for marketers, managers and viewers.

`app.py` builds the Starlette app (sign-in, the route table, the role and CSRF checks) that
`touchflow serve` runs with the webhook and unsubscribe app mounted under it; `pages.py` holds
what pages share; `playbooks.py` and `review.py` are pages; `auth.py` sessions, CSRF and the
sign-in throttle; `users.py` the local users; `describe.py` and `graph.py` turn a playbook into
words and an SVG journey; `checks.py` the checks shown beside a rendered email.
"""

from engine.console.app import ALL_PAGES, create_console

__all__ = ["ALL_PAGES", "create_console"]
