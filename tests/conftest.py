"""Suite-wide setup: a throwaway AIRFLOW_HOME on SQLite, set before anything imports Airflow."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_HOME = Path(tempfile.mkdtemp(prefix="pioneer-test-airflow-"))
_DAGS = _HOME / "dags"
_DAGS.mkdir()
# One dags folder that holds both the test DAGs and the shipped example DAGs: dag.test()
# needs a DAG to be a file in the configured folder.
(_DAGS / "test_dagfiles").symlink_to(REPO / "tests" / "dags" / "dagfiles")
(_DAGS / "example_dags").symlink_to(REPO / "example_dags")

os.environ["AIRFLOW_HOME"] = str(_HOME)
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(_DAGS)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME / 'airflow.db'}"
os.environ.pop("AIRFLOW_CONN_PIONEER_DEFAULT", None)
# The example batch DAG derives its asset's URI from this at parse time. Any dag.test() in the
# session serializes every DAG of the folder, so it must read the same value in every test, or the
# asset a later test expects is found "inactive" (same name, other URI).
os.environ["PIONEER_EXAMPLE_OUTPUT"] = str(_HOME / "example_output")
# One Fernet key for this process and every child it starts (`airflow db migrate`, killed-task
# children): otherwise migrate writes a new key to airflow.cfg after this process read its config,
# and Variables encrypted by one cannot be read by the other.
if "AIRFLOW__CORE__FERNET_KEY" not in os.environ:
    from cryptography.fernet import Fernet

    os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()


# The browser tests (tests/browser: a whole Airflow deployment driven by headless Chromium) run
# under `make browser` only, which sets PIONEER_BROWSER_TESTS=1; plain `pytest` / `make test` skip
# collecting them (no skipped tests either: they are simply not part of that run).
collect_ignore = [] if os.environ.get("PIONEER_BROWSER_TESTS") == "1" else ["browser"]


# --- Leak guard -------------------------------------------------------------------------------
# Every key any in-process emulator issues is recorded; a test whose captured output (stdout,
# stderr, log records) or failure report contains one of them fails, whatever it asserted.

import pytest  # noqa: E402

_ISSUED_KEYS: set[str] = set()


@pytest.fixture(autouse=True, scope="session")
def _record_issued_keys():  # type: ignore[no-untyped-def]
    from airflow_provider_pioneer.testing import state

    original = state.EmulatorState._create_key

    def recording(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        key = original(self, *args, **kwargs)
        _ISSUED_KEYS.add(key.value)
        return key

    state.EmulatorState._create_key = recording  # type: ignore[method-assign]
    yield _ISSUED_KEYS
    state.EmulatorState._create_key = original  # type: ignore[method-assign]


def leaked_in(text: str) -> bool:
    return any(key in text for key in _ISSUED_KEYS)


def _scrub(text: str) -> str:
    for key in _ISSUED_KEYS:
        text = text.replace(key, "<LEAKED KEY>")
    return text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    # Sections accumulate over setup/call/teardown: judge only this phase's own.
    places = [name for name, content in report.sections if name.endswith(report.when) and leaked_in(content)]
    if report.failed and leaked_in(report.longreprtext):
        places.append("the failure report")
    if places:
        report.outcome = "failed"
        report.longrepr = f"An API key issued by the emulator appeared in: {', '.join(places)}."
    # Never echo a key into the terminal or CI log either.
    report.sections = [(name, _scrub(content)) for name, content in report.sections]
