"""Health scores: a declared model (`health.yaml`), computed set-based in SQL once a day into
`health_history`, explained component by component, and backtested against churn.

- `spec.py`: the model file's language (pydantic; docstrings feed the JSON Schema);
- `load.py`: `health.yaml` → `HealthModel`, with `file:line:col` problems;
- `sql.py`: the model → one INSERT … SELECT scoring every account at a `now`;
- `compute.py`: the daily stage, past days, and reading scores back;
- `backtest.py`: how the scores ranked the accounts that later churned.
"""
