# Every target bootstraps .venv itself: a fresh clone needs only Python 3.11+ and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# Every dependency pinned, as resolved and tested (`make lock` re-resolves): a fresh machine installs
# exactly this set in a minute, where an unpinned resolve against today's PyPI backtracked for 35.
LOCK   := constraints/dev.txt
PIP_INSTALL := timeout 900 $(BIN)/python -m pip install --quiet -c $(LOCK)
# Pioneer's published OpenAPI document: the team's copy beside the repo (../shared) when there is
# one, else the snapshot in conformance/ (a clean clone on its own). `make conformance` reads it.
SNAPSHOT := $(CURDIR)/conformance/openapi-inference.json
OPENAPI ?= $(firstword $(wildcard $(CURDIR)/../shared/pioneer/openapi-inference.json) $(SNAPSHOT))

.PHONY: lock venv lint typecheck test test-demo unit conformance docs demo airflow e2e browser bench bench-celery test-matrix release-check clean

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(PIP_INSTALL) -e '.[test,test-providers]'
	@touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# The whole suite: lint, types, unit, integration (real HTTP to the emulator) and DAG runs, on
# PYTEST_WORKERS pytest-xdist workers (CI has 2 cores; most tests wait on sockets, sleeps and child
# processes). Each worker has its own Airflow home; tests that must share one carry an xdist_group
# mark (--dist loadgroup). PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadgroup)
test: lint typecheck
	$(BIN)/pytest $(XDIST) -m "not demo" --durations=25

# The demo's own tests (tests/integration/test_demo.py): `make demo` end to end, twice; about two
# minutes, so a step of .ci/run of its own rather than part of `make test`.
test-demo: $(STAMP)
	$(BIN)/pytest -m demo -p no:randomly tests/integration/test_demo.py

unit: $(STAMP)
	$(BIN)/pytest tests/unit

# Checks the emulator and the hook's requests against Pioneer's OpenAPI document.
conformance: $(STAMP)
	@cmp -s $(OPENAPI) $(SNAPSHOT) || echo "note: $(OPENAPI) differs from $(SNAPSHOT): Pioneer's document changed; refresh the snapshot"
	PIONEER_OPENAPI=$(OPENAPI) $(BIN)/pytest conformance -p no:randomly

# The user documentation (mkdocs.yml, docs/) into site/, strictly: a broken link, anchor or snippet
# (the code the pages pull from example_dags/ and tests/) fails the build. Installs the docs extra.
docs: $(STAMP)
	$(PIP_INSTALL) -e '.[test,test-providers,docs]'
	$(BIN)/mkdocs build --strict --clean --site-dir site

# Both example DAGs against the local Pioneer emulator: no account, no network (scripts/demo.py).
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The same setup under `airflow standalone` on http://127.0.0.1:8080, no login; Ctrl-C stops it all.
airflow: $(STAMP)
	$(BIN)/python scripts/airflow_local.py

# A real deployment: PostgreSQL, api-server, scheduler, dag-processor, triggerer (scripts/e2e.py).
# EXECUTOR=celery (default): Redis (Debian's redis-server, apt-get installed when missing), two
# celery workers on two hostnames, output on S3 (moto), a worker and a "machine" killed mid-batch.
# EXECUTOR=local: LocalExecutor, output on local disk, one task process killed mid-shard.
EXECUTOR ?= celery
e2e: $(STAMP)
	$(PIP_INSTALL) -e '.[test,test-providers,e2e]'
	$(BIN)/python scripts/e2e.py --executor $(EXECUTOR)

# One job in 8 shards over 2 Celery workers on one rate-limited account, headers sent and hidden
# (benchmarks/celery/shards.py, about 5 minutes; options: make bench-celery ARGS="--texts 3200").
bench-celery: $(STAMP)
	$(PIP_INSTALL) -e '.[test,test-providers,e2e]'
	$(BIN)/python benchmarks/celery/shards.py $(ARGS)

# Headless Chromium on the real UI of a `make airflow`-like deployment (tests/browser): the Pioneer
# view, per-user DAG access, the connection Test button, readable names in the rotation log.
# Installs Debian's chromium when /usr/bin/chromium is missing (apt-get: root or sudo). Screenshots
# and server logs go to .browser-artifacts/.
CHROMIUM ?= /usr/bin/chromium
browser: $(STAMP)
	@test -x $(CHROMIUM) || { \
	  SUDO=$$(test "$$(id -u)" = 0 || echo sudo); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver; }
	$(PIP_INSTALL) -e '.[test,test-providers,browser]'
	PIONEER_BROWSER_TESTS=1 PIONEER_CHROMIUM=$(CHROMIUM) $(BIN)/pytest tests/browser -p no:randomly

# The suite on every Airflow x Python pair docs/compatibility.md's version table lists, one venv each
# (.venv-matrix/af<airflow>-py<python>), one after another. Needs only python3 (stdlib) and the
# Pythons of the matrix (python3.12 on PATH or under ~/.pyenv/versions). scripts/test_matrix.py.
# Each pair's suite runs on PYTEST_WORKERS xdist workers, as `make test`.
test-matrix:
	$(PYTHON) scripts/test_matrix.py --workers $(PYTEST_WORKERS)

# Builds the sdist and wheel, installs the wheel alone into a throwaway venv and checks Airflow
# lists the provider and its connection type, and the testing extra's fixture works (scripts/release_check.py).
release-check: $(STAMP)
	$(BIN)/python scripts/release_check.py

# Re-resolves the dev venv's dependencies from scratch (a throwaway venv, no pins) and writes the
# lock; `python scripts/test_matrix.py --relock` does the same for the matrix's pairs.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet --upgrade pip
	timeout 3600 .venv-lock/bin/python -m pip install --quiet -e '.[test,test-providers,e2e,browser,docs]'
	{ echo "# make lock: the dev venv's dependencies as resolved on $$(date -u +%F) (Python 3.11)."; \
	  .venv-lock/bin/python -m pip freeze --exclude-editable; } > $(LOCK)
	rm -rf .venv-lock

clean:
	rm -rf $(VENV) .venv-matrix .airflow .demo .e2e .mypy_cache .ruff_cache dist build site
