# The two set-up commands: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint typecheck schema clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing hemhub and its dependencies into $(VENV) (a few minutes, once)..."
	@$(BIN)/python -m pip install -qq --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install -qq --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The PGlite TimescaleDB that the storage tests use where the PostgreSQL server lacks the
# extension (tests/timescaledb_server.py); without npm those tests skip, saying why.
TSDB := tests/timescaledb/node_modules/.package-lock.json
$(TSDB): tests/timescaledb/package-lock.json
	if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/timescaledb \
	  || echo "npm ci failed: the TimescaleDB storage tests will skip (or fail under CI)"; fi

demo: $(STAMP)
	$(BIN)/hemhub demo

test: $(STAMP) $(TSDB)
	$(BIN)/ruff check .
	$(BIN)/mypy hemhub device_drivers gateway ingest api edge_image
	$(BIN)/python -m pytest

# Figures against baselines of the same run, written to bench-results.json (bench/README.md).
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy hemhub device_drivers gateway ingest api edge_image

schema: $(STAMP)
	$(BIN)/hemhub schema > docs/wire-contract.schema.json

clean:
	rm -rf $(VENV) .hemhub .pytest_cache .mypy_cache .ruff_cache
