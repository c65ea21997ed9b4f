"""Whole-DAG runs: a migrated SQLite metadata DB, migrated once per test run.

``airflow db migrate`` is a child process that imports all of Airflow and runs every migration
(15 to 40 s on CI's 2 cores). Under pytest-xdist every worker has an AIRFLOW_HOME of its own
(tests/conftest.py), so the first worker that needs a DB migrates it and leaves a copy in the run's
shared temporary directory; the other workers copy that file instead of migrating again.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

#: This process's DB is migrated. Test modules outside tests/dags import the fixture
#: (``from tests.dags.conftest import airflow_db``), which gives each of them a FixtureDef, and so
#: a session-scoped call, of its own: those calls find the DB migrated and return at once.
_MIGRATED: list[Path] = []


def _db_file() -> Path:
    url = os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert url.startswith("sqlite:///"), f"the suite's metadata DB is SQLite, not {url}"
    return Path(url.removeprefix("sqlite:///"))


def _migrate() -> None:
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stderr[-3000:]}"


def _install_copy(template: Path, db: Path) -> None:
    """Put the migrated ``template`` in place of this process's DB file."""
    # In place (same inode): a connection this process may already hold sees the new file, never
    # a deleted one; then drop the pooled connections so none keeps a stale schema.
    shutil.copyfile(template, db)
    settings = sys.modules.get("airflow.settings")
    engine = getattr(settings, "engine", None)
    if engine is not None:
        engine.dispose()


def migrated_db(shared_dir: Path | None) -> Path:
    """Migrate this process's metadata DB once; ``shared_dir``: where xdist workers share a template."""
    if _MIGRATED:
        return _MIGRATED[0]
    db = _db_file()
    if shared_dir is None:
        _migrate()
    else:
        template = shared_dir / "airflow-migrated.db"
        with (shared_dir / "airflow-migrated.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the others wait for the first migration
            if template.exists():
                _install_copy(template, db)
            else:
                _migrate()
                partial = template.with_suffix(".partial")
                shutil.copyfile(db, partial)
                partial.replace(template)
    _MIGRATED.append(db)
    return db


@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A migrated metadata DB in the suite's AIRFLOW_HOME; yields the dags folder."""
    # xdist gives each worker <run's basetemp>/<worker id>: the parent is this run's, shared by its workers.
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    migrated_db(tmp_path_factory.getbasetemp().parent if worker else None)
    yield Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
