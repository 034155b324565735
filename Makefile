# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PostgreSQL for the second run of every database test; `TEST_DATABASE_URL= make test` skips it.
TEST_DATABASE_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export TEST_DATABASE_URL

.PHONY: run serve test lint constraints

$(BIN)/quorum: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@# The distribution was called `quorum` before (a name PyPI gives an unrelated project).
	@$(BIN)/pip uninstall --yes --quiet --disable-pip-version-check quorum 2>/dev/null || true
	touch $@

## Set up and run Quorum on the embedded SQLite default: the real app in your terminal.
run: $(BIN)/quorum
	$(BIN)/quorum shell

## Set up and serve Slack over HTTP (needs SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET).
serve: $(BIN)/quorum
	$(BIN)/quorum serve

## Set up and run the whole test suite (SQLite and PostgreSQL, a real Alertmanager and MLflow,
## promtool for the alert rules) and the linter.
test: $(BIN)/quorum
	@if [ -n "$(TEST_DATABASE_URL)" ]; then $(BIN)/python scripts/ensure_postgres.py; fi
	@bash scripts/ensure_alertmanager.sh
	@bash scripts/ensure_promtool.sh
	@bash scripts/ensure_mlflow.sh
	@bash scripts/ensure_chromium.sh
	$(BIN)/python -m pytest
	$(BIN)/ruff check .

lint: $(BIN)/quorum
	$(BIN)/ruff check .

## Pin the versions this venv passed the tests with (the Dockerfile installs with them).
constraints: $(BIN)/quorum
	{ echo "# The versions the test suite passed with: the Dockerfile installs with \`pip install -c constraints.txt .\`."; \
	  echo "# Regenerate from a working, tested venv with \`make constraints\` (pip freeze, editable install left out)."; \
	  $(BIN)/pip freeze --exclude-editable --disable-pip-version-check; } > constraints.txt
