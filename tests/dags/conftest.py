"""Whole-DAG runs: migrate the throwaway SQLite metadata DB once per session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[Path]:
    """A migrated metadata DB in the suite's AIRFLOW_HOME; yields the dags folder."""
    airflow = Path(sys.executable).with_name("airflow")
    result = subprocess.run(
        [str(airflow), "db", "migrate"], capture_output=True, text=True, env=os.environ.copy(), check=False
    )
    assert result.returncode == 0, f"airflow db migrate failed:\n{result.stderr[-3000:]}"
    yield Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
