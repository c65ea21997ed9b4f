"""A batch inference that reads its key through key_variable, for the rotation-survival test.

tests/dags/test_rotation_dags.py runs it in a child process while this process rotates the key
under it; every item must still succeed.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

TEXTS = [f"Item {i}: Apple opened an office in Berlin with Siemens and Tim Cook." for i in range(120)]

with DAG(
    "pioneer_test_rotation_inference",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["test"],
):
    PioneerInferenceOperator(
        task_id="extract",
        model_id="fastino/gliner2-base-v1",
        texts=TEXTS,
        entities=["organization", "location", "person"],
        batch_size=4,
        max_concurrency=2,
        requests_per_minute=6000,
        progress_interval=1.0,
        retries=0,
    )
