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
