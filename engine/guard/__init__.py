"""Guardrails: bad data must not become bad email.

- `sources.py` (pure): which sources of customer data a playbook's conditions read, and the
  default freshness limit each needs (an absence condition's own window).
- `decide.py` (pure): is a source stale, would a tick's enrollments trip the circuit breaker; the
  words the audit and the tick summary use.
- `checks.py` (stages): the store reads and writes behind them — when each source last received
  data, the segment's size, the `playbook_holds` rows, `resume`, and the trips a replay recorded.
"""
