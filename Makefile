# The two commands: `make run` (the demo) and `make test` (lint, types, tests, docs).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck contracts pytest docs-build docs bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/leadflow demo

test: $(STAMP) lint typecheck contracts docs-build pytest

lint: $(STAMP)
	$(BIN)/ruff check orchestrator tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict orchestrator

contracts: $(STAMP)
	$(BIN)/lint-imports

pytest: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadgroup

# The docs site: built with --strict (a broken link fails) into site/, served by `make docs`.
docs-build: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) var build dist site .mypy_cache .pytest_cache .ruff_cache .import_linter_cache
