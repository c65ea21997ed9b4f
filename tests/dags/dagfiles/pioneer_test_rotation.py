"""Test DAGs for PioneerKeyRotationOperator (run by tests/dags/test_rotation_dags.py and tests/rotation_*.py).

``pioneer_test_rotation`` retries once at once, so one dag.test() shows both a failed attempt and
the rerun that must converge; ``pioneer_test_rotation_once`` never retries, so a failure stays
visible; ``pioneer_test_rotation_keep_old`` keeps the replaced key alive;
``pioneer_test_rotation_staging`` rotates a second Variable through a second connection
(``pioneer_staging``), on the same Pioneer account. The crash tests' reruns stand for the next
night, past any grace period, so these DAGs sweep orphans at once. The race test's DAGs are in
pioneer_test_rotation_race.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG

from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator

RERUN: dict[str, Any] = {"orphan_grace_period": 0}

for dag_id, retries, revoke_old, variable_key, conn_id, options in (
    ("pioneer_test_rotation", 1, True, "pioneer_api_key", "pioneer_default", RERUN),
    ("pioneer_test_rotation_once", 0, True, "pioneer_api_key", "pioneer_default", RERUN),
    ("pioneer_test_rotation_keep_old", 0, False, "pioneer_api_key", "pioneer_default", {}),
    ("pioneer_test_rotation_staging", 0, True, "pioneer_api_key_staging", "pioneer_staging", {}),
):
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        max_active_runs=1,
        tags=["test"],
    ):
        PioneerKeyRotationOperator(
            task_id="rotate",
            revoke_old=revoke_old,
            variable_key=variable_key,
            pioneer_conn_id=conn_id,
            # One task instance at a time per DAG (two DAGs on one Variable still race: see *_race).
            max_active_tis_per_dag=1,
            retries=retries,
            retry_delay=timedelta(seconds=0),
            **options,
        )
