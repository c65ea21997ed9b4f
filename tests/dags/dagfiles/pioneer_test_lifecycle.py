"""Test DAGs for the model-lifecycle operators (run by tests/dags/test_lifecycle_dags.py).

Names, paths and gates come from the run's conf through templates, so one parsed DAG serves every test.
Waits poll every 0.05 s: the tests make the emulator's simulated durations tiny.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_pioneer.operators.datasets import PioneerDatasetUploadOperator
from airflow_provider_pioneer.operators.evaluation import PioneerEvaluationOperator
from airflow_provider_pioneer.operators.training import PioneerTrainingJobOperator, PioneerTrainingJobSensor

POLL = 0.05

with DAG(
    "pioneer_test_dataset",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"input_path": "", "dataset_name": "ds"},
    tags=["test"],
):
    PioneerDatasetUploadOperator(
        task_id="upload",
        input_path="{{ params.input_path }}",
        dataset_name="{{ params.dataset_name }}",
        poll_interval=POLL,
        retries=2,  # a refused file is a verdict: must not be retried
    )

# Each try gives up on processing after 1 s (retryably): the retries must reuse the uploaded version.
with DAG(
    "pioneer_test_dataset_retry",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"input_path": "", "dataset_name": "ds"},
    tags=["test"],
):
    PioneerDatasetUploadOperator(
        task_id="upload",
        input_path="{{ params.input_path }}",
        dataset_name="{{ params.dataset_name }}",
        poll_interval=POLL,
        wait_timeout=1.0,
        retries=3,
        retry_delay=timedelta(0),
    )

# The training task, deferred or waiting in the worker, each with retries that a
# verdict (402, a failed job) must not use.
for dag_id, deferrable, wait_for in (
    ("pioneer_test_training", True, "complete"),
    ("pioneer_test_training_sync", False, "complete"),
    ("pioneer_test_training_callable", True, "callable"),
):
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        params={"dataset_name": "ds", "model_name": "m", "wandb_key": "none"},
        tags=["test"],
    ):
        PioneerTrainingJobOperator(
            task_id="train",
            base_model="fastino/gliner2-base-v1",
            datasets=[{"name": "{{ params.dataset_name }}"}],
            model_name="{{ params.model_name }}",
            wait_for=wait_for,
            nr_epochs=3,
            learning_rate=5e-5,
            # A secret among the passed-through fields: it must stay out of events, XComs and logs.
            extra_fields={"validation_data_percentage": 0.2, "wandb_api_key": "{{ params.wandb_key }}"},
            deferrable=deferrable,
            poll_interval=POLL,
            wait_timeout=60,
            retries=2,
            retry_delay=timedelta(0),
        )

with DAG(
    "pioneer_test_training_timeout",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"dataset_name": "ds", "model_name": "m"},
    tags=["test"],
):
    PioneerTrainingJobOperator(
        task_id="train",
        base_model="fastino/gliner2-base-v1",
        datasets=["{{ params.dataset_name }}"],
        model_name="{{ params.model_name }}",
        nr_epochs=5,
        deferrable=True,
        poll_interval=POLL,
        wait_timeout=1.5,
        retries=0,
    )

# Each try gives up after 1 s (a retryable failure); the retries must wait for the same job.
with DAG(
    "pioneer_test_training_retry",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"dataset_name": "ds", "model_name": "m"},
    tags=["test"],
):
    PioneerTrainingJobOperator(
        task_id="train",
        base_model="fastino/gliner2-base-v1",
        datasets=["{{ params.dataset_name }}"],
        model_name="{{ params.model_name }}",
        nr_epochs=5,
        deferrable=True,
        poll_interval=POLL,
        wait_timeout=1.0,
        retries=4,
        retry_delay=timedelta(0),
    )

with DAG(
    "pioneer_test_training_sensor",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"job_id": ""},
    tags=["test"],
):
    PioneerTrainingJobSensor(
        task_id="wait",
        job_id="{{ params.job_id }}",
        wait_for="callable",
        deferrable=True,
        poll_interval=POLL,
        timeout=60,
        retries=2,  # a verdict while waiting (a 422) must not use them
        retry_delay=timedelta(0),
    )

# A classic sensor: reschedule mode frees the worker slot between pokes; soft_fail skips a failed job.
with DAG(
    "pioneer_test_training_sensor_reschedule",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"job_id": ""},
    tags=["test"],
):
    PioneerTrainingJobSensor(
        task_id="wait",
        job_id="{{ params.job_id }}",
        deferrable=False,
        mode="reschedule",
        soft_fail=True,
        poll_interval=0.2,
        timeout=60,
    )

for dag_id, on_below in (("pioneer_test_evaluation", "fail"), ("pioneer_test_evaluation_skip", "skip")):
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        params={"model": "", "dataset_name": "ds", "min_f1": 0.8},
        tags=["test"],
    ):
        gate = PioneerEvaluationOperator(
            task_id="evaluate",
            base_model="{{ params.model }}",
            dataset_name="{{ params.dataset_name }}",
            min_f1="{{ params.min_f1 }}",
            on_below=on_below,
            deferrable=True,
            poll_interval=POLL,
            wait_timeout=60,
            retries=2,
            retry_delay=timedelta(0),
        )

        @task
        def after_gate() -> str:
            return "ran"

        gate >> after_gate()
