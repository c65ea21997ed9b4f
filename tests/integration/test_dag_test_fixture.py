"""The ``pioneer_dag_test`` machinery without a DAG run: parsing errors, the DAGs folder, the home's
environment. (The README's example, ``tests/dags/readme_example/``, runs a DAG through it.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_pioneer.testing.dag_test import AirflowHome, DagTestError, load_dag

_TWO_DAGS = """
from airflow.sdk import dag

@dag(schedule=None)
def first():
    pass

@dag(schedule=None)
def second():
    pass

first()
second()
"""


def test_a_dag_file_that_does_not_import_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken_dag.py"
    broken.write_text("from airflow.sdk import dag\nimport no_such_module_here\n")
    with pytest.raises(
        DagTestError, match=r"(?s)broken_dag\.py has import errors:\n.*No module named .no_such_module_here"
    ):
        load_dag("anything", broken)


def test_the_dag_to_run_must_be_named_when_a_file_has_several(tmp_path: Path) -> None:
    both = tmp_path / "both.py"
    both.write_text(_TWO_DAGS)
    with pytest.raises(DagTestError, match=r"defines \['first', 'second'\]: name the DAG"):
        load_dag(None, both)
    with pytest.raises(DagTestError, match=r"DAG 'third' not found in .*both\.py: it defines"):
        load_dag("third", both)
    assert load_dag("second", both).dag_id == "second"


def test_the_home_owns_its_db_and_folders_and_keeps_the_rest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "postgresql://prod.example/airflow")
    monkeypatch.setenv("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD", "echo postgresql://prod.example/airflow")
    monkeypatch.setenv("AIRFLOW_CONFIG", "/etc/airflow/airflow.cfg")
    monkeypatch.setenv("AIRFLOW__CORE__PARALLELISM", "3")
    home = AirflowHome(tmp_path / "home")
    assert home.env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{tmp_path / 'home' / 'airflow.db'}"
    assert "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD" not in home.env
    assert home.env["AIRFLOW_CONFIG"] == str(tmp_path / "home" / "airflow.cfg")
    assert home.env["AIRFLOW__CORE__DAGS_FOLDER"] == str(home.dags_folder)
    assert home.env["AIRFLOW__CORE__PARALLELISM"] == "3"
    # A session's home, a test's own environment: what a test sets reaches its runs.
    monkeypatch.setenv("PIONEER_EXAMPLE_INPUT", "s3://bucket/in.jsonl")
    monkeypatch.setenv("AIRFLOW__CORE__DAGS_FOLDER", "/elsewhere")
    assert home.env["PIONEER_EXAMPLE_INPUT"] == "s3://bucket/in.jsonl"
    assert home.env["AIRFLOW__CORE__DAGS_FOLDER"] == str(home.dags_folder)


def test_a_dag_file_elsewhere_is_reached_with_what_lies_beside_it(tmp_path: Path) -> None:
    home = AirflowHome(tmp_path / "home")
    project = tmp_path / "project" / "dags"
    (project / "data").mkdir(parents=True)
    (project / "my_dag.py").write_text("")
    (project / "data" / "input.jsonl").write_text("{}\n")
    placed = home.place(project / "my_dag.py")
    assert placed.parent.parent == home.dags_folder
    assert (placed.parent / "data" / "input.jsonl").read_text() == "{}\n"
    assert home.place(project / "my_dag.py") == placed  # one link per directory
    inside = home.dags_folder / "own.py"
    inside.write_text("")
    assert home.place(inside) == inside.resolve()
    with pytest.raises(DagTestError, match=r"DAG file .*missing\.py does not exist"):
        home.place(project / "missing.py")
