"""Test DAGs for PioneerKeyRotationOperator (run by tests/dags/test_rotation_dags.py and the kill tests)."""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator

with DAG(
    "pioneer_test_rotation",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["test"],
):
    PioneerKeyRotationOperator(task_id="rotate", max_active_tis_per_dag=1, retries=0)

with DAG(
    "pioneer_test_rotation_keep_old",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["test"],
):
    PioneerKeyRotationOperator(task_id="rotate", revoke_old=False, max_active_tis_per_dag=1, retries=0)
