# The two set-up commands of the README: `make run` and `make test`.
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

.PHONY: install run test lint
install: $(BIN)/.installed

## run the bot on its embedded default: SQLite, demo data
run: $(BIN)/.installed
	$(BIN)/examdesk demo
	$(BIN)/examdesk serve

## run the test suite (SQLite unless TEST_DATABASE_URL is set)
test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
