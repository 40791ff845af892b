"""CSM portfolios, the manager's view: per CSM their accounts and ARR, health against the team and
the component that drags it, at-risk renewals, and the tasks their playbooks opened and closed."""
