# The two commands of a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_ACCOUNTS ?= 2000
# A fixed Tuesday morning (UTC): Asia and Europe are in business hours, the Americas in quiet
# hours, so the demo shows sends, deferrals and caps the same way on every machine.
DEMO_NOW ?= 2026-11-24T09:00
DEMO_USER ?= demo-admin@touchflow.example

.PHONY: demo test lint typecheck pytest schema golden clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is required")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/touchflow validate
	$(BIN)/touchflow demo-data --accounts $(DEMO_ACCOUNTS) --seed 7 --now $(DEMO_NOW)
	@echo "Your own data takes this path: new events from a CSV file, keyed by your ids (docs/data.md):"
	$(BIN)/touchflow import events demo/sample-events.csv
	$(BIN)/touchflow run --now $(DEMO_NOW)
	@echo "Run it again — nothing is sent twice:"
	$(BIN)/touchflow run --now $(DEMO_NOW)
	@echo "Why each message was sent, deferred or skipped (touchflow audit):"
	$(BIN)/touchflow audit --summary
	$(BIN)/touchflow audit --reason capped_contact_daily --limit 3
	$(BIN)/touchflow audit --reason deferred_quiet_hours --limit 3
	@echo "Six more mornings: deferred messages go out on their next allowed day, under the caps:"
	@for day in 25 26 27 28 29 30; do \
	  $(BIN)/touchflow run --now 2026-11-$${day}T09:00 --json > /dev/null && echo "  tick of 2026-11-$$day done"; \
	done
	@echo "Recipients open, click, bounce and unsubscribe (signed events through the webhook):"
	$(BIN)/touchflow demo-engagement --now 2026-11-30T12:00
	$(BIN)/touchflow experiments anniversary
	@echo "Does the health score predict churn? A year of scores, one day a week, against who left:"
	$(BIN)/touchflow health compute --now $(DEMO_NOW) --days 365 --every 7 > /dev/null
	$(BIN)/touchflow health backtest --now $(DEMO_NOW) --horizon 90d
	@echo "The weekly lifecycle funnel: cohorts by contract start, and the bottleneck:"
	$(BIN)/touchflow funnel --weeks 12 --now $(DEMO_NOW)
	@echo "The console, in a browser: an admin made for the demo (its password is shown this once):"
	@password=$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(12))') && \
	  { echo "$$password" | $(BIN)/touchflow users add $(DEMO_USER) --role admin > /dev/null 2>&1 || \
	    echo "$$password" | $(BIN)/touchflow users set-password $(DEMO_USER) > /dev/null; } && \
	  echo "  $(BIN)/touchflow serve    then open http://127.0.0.1:8080/login" && \
	  echo "  email:    $(DEMO_USER)" && \
	  echo "  password: $$password"

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check engine flows demo benchmarks tests
	$(BIN)/ruff format --check engine flows demo benchmarks tests

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

schema: $(STAMP)  ## regenerate schemas/playbook.schema.json after changing engine/spec
	$(BIN)/touchflow schema > schemas/playbook.schema.json

golden: $(STAMP)  ## rewrite golden files (compiled SQL) after an intended change; review the diff
	TOUCHFLOW_UPDATE_GOLDEN=1 $(BIN)/pytest tests/compile tests/docs -q

clean:
	rm -rf $(VENV) outbox .prefect touchflow.db touchflow.db-*
