"""Test DAGs for PioneerInferenceOperator (run by tests/dags/test_inference_dags.py, kill test included).

Inputs and outputs come from the run's conf through templates, so one parsed DAG serves every test.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task

from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

LABELS = ["person", "organization", "location"]

with DAG(
    "pioneer_test_inference_file",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"input_path": "", "output_path": ""},
    render_template_as_native_obj=True,
    tags=["test"],
):
    PioneerInferenceOperator(
        task_id="infer",
        model_id="fastino/gliner2-base-v1",
        input_path="{{ params.input_path }}",
        output_path="{{ params.output_path }}",
        entities=LABELS,
        batch_size=5,
        max_concurrency=3,
        requests_per_minute=1200,
        progress_interval=1.0,
        retries=2,  # must not be used on 402: AirflowFailException
    )

with DAG(
    "pioneer_test_inference_mapped",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"output_dir": ""},
    tags=["test"],
):

    @task
    def shards() -> list[list[dict[str, str]]]:
        names = ["Alice Smith", "Bob Jones", "Maria Garcia"]
        docs = [
            {"id": f"d{i}", "text": f"{names[i % 3]} visited Acme Corp in Paris ({i})."} for i in range(30)
        ]
        return [docs[0:10], docs[10:20], docs[20:30]]

    PioneerInferenceOperator.partial(
        task_id="infer",
        model_id="fastino/gliner2-base-v1",
        entities=LABELS,
        output_path="{{ params.output_dir }}/shard-{{ ti.map_index }}.jsonl",
        batch_size=4,
        max_concurrency=2,
        pool="pioneer_test_pool",
    ).expand(texts=shards())


# A task Airflow retries at once: the retry resumes from the first try's checkpoint.
with DAG(
    "pioneer_test_inference_retry",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    params={"input_path": "", "output_path": ""},
    render_template_as_native_obj=True,
    tags=["test"],
):
    PioneerInferenceOperator(
        task_id="infer",
        model_id="fastino/gliner2-base-v1",
        input_path="{{ params.input_path }}",
        output_path="{{ params.output_path }}",
        entities=LABELS,
        batch_size=5,
        max_concurrency=1,
        retries=1,
        retry_delay=timedelta(0),
    )

# No Airflow retries: what a kill (SIGTERM, execution timeout) leaves behind stays visible.
for dag_id, timeout in (("pioneer_test_inference_once", None), ("pioneer_test_inference_timeout", 2)):
    with DAG(
        dag_id,
        schedule=None,
        start_date=datetime(2025, 1, 1),
        catchup=False,
        params={"input_path": "", "output_path": ""},
        render_template_as_native_obj=True,
        tags=["test"],
    ):
        PioneerInferenceOperator(
            task_id="infer",
            model_id="fastino/gliner2-base-v1",
            input_path="{{ params.input_path }}",
            output_path="{{ params.output_path }}",
            entities=LABELS,
            batch_size=5,
            max_concurrency=3,
            progress_interval=1.0,
            retries=0,
            execution_timeout=timedelta(seconds=timeout) if timeout else None,
        )

with DAG(
    "pioneer_test_inference_upstream_none",
    schedule=None,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["test"],
):

    @task
    def load_texts() -> None:
        """An upstream task that forgot to return its texts."""
        print(["Alice Smith met Bob Jones."])

    PioneerInferenceOperator(
        task_id="infer",
        model_id="fastino/gliner2-base-v1",
        texts=load_texts(),
        entities=LABELS,
        retries=2,  # a verdict: must not be retried
    )
