# The two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint typecheck schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hemhub demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy hemhub device_drivers gateway ingest api
	$(BIN)/python -m pytest

# Figures against baselines of the same run, written to bench-results.json (bench/README.md).
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy hemhub device_drivers gateway ingest api

schema: $(STAMP)
	$(BIN)/hemhub schema > docs/wire-contract.schema.json

clean:
	rm -rf $(VENV) .hemhub .pytest_cache .mypy_cache .ruff_cache
