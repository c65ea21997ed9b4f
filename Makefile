# Every target bootstraps .venv itself: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Pioneer's published OpenAPI document lives outside the repo (../shared); only `make conformance` reads it.
OPENAPI ?= $(CURDIR)/../shared/pioneer/openapi-inference.json

.PHONY: venv lint typecheck test unit conformance demo airflow e2e bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite: lint, types, unit, integration (real HTTP to the emulator) and DAG runs.
test: lint typecheck
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Checks the emulator and the hook's requests against Pioneer's OpenAPI document.
conformance: $(STAMP)
	PIONEER_OPENAPI=$(OPENAPI) $(BIN)/pytest conformance -p no:randomly

# Both example DAGs against the local Pioneer emulator: no account, no network (scripts/demo.py).
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The same setup under `airflow standalone` on http://127.0.0.1:8080, no login; Ctrl-C stops it all.
airflow: $(STAMP)
	$(BIN)/python scripts/airflow_local.py

# A real deployment: PostgreSQL, api-server, scheduler, dag-processor, triggerer; a shard killed mid-run (scripts/e2e.py).
e2e: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,e2e]'
	$(BIN)/python scripts/e2e.py

clean:
	rm -rf $(VENV) .airflow .demo .e2e .mypy_cache .ruff_cache
