"""Helpers for whole-DAG tests."""

from __future__ import annotations

import os
from typing import Any


def load_dag(dag_id: str) -> Any:
    """Parse the dags folder and return ``dag_id`` (fails the test on any import error)."""
    from airflow_provider_pioneer.testing.dag_test import load_dag as load

    return load(dag_id, os.environ["AIRFLOW__CORE__DAGS_FOLDER"])


def xcom_value(dag_id: str, run_id: str, task_id: str, key: str) -> Any:
    """What a task pushed, read back from the metastore."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id, task_id=task_id, key=key).one()
        return XComModel.deserialize_value(row)
