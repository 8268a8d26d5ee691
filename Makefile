# The two quick-start commands:  make run  (the bot on SQLite)  and  make test  (everything).
VENV ?= .venv
PYTHON ?= python3
BIN = $(VENV)/bin
PG_TEST_URL ?= postgresql+psycopg://127.0.0.1:5432/test

.PHONY: run test lint unit bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/petitionbot run

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# SQLite first, then the same suite on PostgreSQL (skipped with a note when none answers,
# unless PETITIONBOT_REQUIRE_POSTGRES=1, as in CI).
test: lint
	$(BIN)/pytest -q
	@if $(BIN)/python -c "import psycopg,sys; psycopg.connect('$(PG_TEST_URL:postgresql+psycopg://%=postgresql://%)', connect_timeout=3).close()" 2>/dev/null; then \
		TEST_DATABASE_URL=$(PG_TEST_URL) $(BIN)/pytest -q; \
	elif [ "$$PETITIONBOT_REQUIRE_POSTGRES" = 1 ]; then \
		echo "PostgreSQL is not answering at $(PG_TEST_URL)"; exit 1; \
	else \
		echo "PostgreSQL is not answering at $(PG_TEST_URL): skipped the PostgreSQL run"; \
	fi

# Each prints its figures beside a baseline measured in the same run (PostgreSQL and SQLite).
bench: $(BIN)/.installed
	$(BIN)/python bench/inbound.py
	$(BIN)/python bench/broadcast.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/feed.py
	$(BIN)/python bench/api.py
	$(BIN)/python bench/events.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
