"""Improve the model, then use it: upload labelled data, fine-tune, evaluate, gate, extract, report.

    upload_train_data ─┐
                       ├─> train (deferred) ─> evaluate (min_f1 gate) ─> extract_entities ─> report
    upload_eval_data ──┘

* ``upload_train_data`` / ``upload_eval_data``: :class:`PioneerDatasetUploadOperator` checks every
  row (each span inside its text), uploads the JSONL to the presigned URL Pioneer hands out (the API
  key never goes with it) and waits until the dataset is ``ready``.
* ``train``: :class:`PioneerTrainingJobOperator` submits the fine-tuning job and *defers*: the
  triggerer polls it with async HTTP and streams its log into the task log, and no worker slot is
  held meanwhile. A retried or restarted task reattaches to the job it submitted; it never pays for
  a second one. ``wait_for="callable"`` waits until the job serves ``/inference``.
* ``evaluate``: :class:`PioneerEvaluationOperator` scores the new job on the held-out dataset (also
  deferred). Below ``params.min_f1`` everything downstream is skipped: a worse model is never used.
* ``extract_entities``: :class:`PioneerInferenceOperator` runs the news sample through the new
  model: its ``model_id`` is the training job's id.
* ``report``: one line per step, returned as the run's summary.

Environment knobs (optional): ``PIONEER_EXAMPLE_OUTPUT`` (where the entities go, as in
``pioneer_batch_inference``), ``PIONEER_LIFECYCLE_INPUT`` (the texts to extract from; default the
news sample shipped in ``data/``).
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_pioneer.operators.datasets import PioneerDatasetUploadOperator
from airflow_provider_pioneer.operators.evaluation import PioneerEvaluationOperator
from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator
from airflow_provider_pioneer.operators.training import PioneerTrainingJobOperator

log = logging.getLogger(__name__)

DATA = Path(__file__).parent / "data"
LABELS = ["person", "organization", "location"]


def _as_url(location: str) -> str:
    if "://" in location:
        return location.rstrip("/")
    return Path(location).expanduser().resolve().as_uri()


INPUT_URL = _as_url(os.environ.get("PIONEER_LIFECYCLE_INPUT") or str(DATA / "news_sample.jsonl"))
OUTPUT_URL = _as_url(
    os.environ.get("PIONEER_EXAMPLE_OUTPUT")
    or str(Path(os.environ.get("AIRFLOW_HOME") or "~/airflow") / "pioneer_output")
)


@dag(
    dag_id="pioneer_model_lifecycle",
    description="Fine-tune a Pioneer model on labelled data, gate it on F1, then extract with it",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    tags=["pioneer", "example"],
    default_args={"owner": "data", "retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "base_model": Param("fastino/gliner2-base-v1", type="string", description="model to fine-tune"),
        "nr_epochs": Param(10, type="integer", minimum=1, description="training epochs"),
        "min_f1": Param(0.8, type="number", minimum=0, maximum=1, description="the gate"),
    },
    render_template_as_native_obj=True,
    doc_md=__doc__,
)
def pioneer_model_lifecycle() -> None:
    # --8<-- [start:lifecycle]
    upload_train = PioneerDatasetUploadOperator(
        task_id="upload_train_data",
        input_path=str(DATA / "ner_train.jsonl"),
        dataset_name="news-ner-train",
        poll_interval=1.0,
    )
    upload_eval = PioneerDatasetUploadOperator(
        task_id="upload_eval_data",
        input_path=str(DATA / "ner_eval.jsonl"),
        dataset_name="news-ner-eval",
        poll_interval=1.0,
    )
    train = PioneerTrainingJobOperator(
        task_id="train",
        base_model="{{ params.base_model }}",
        datasets=upload_train.output,
        # One name per run: it is also how a submit whose answer was lost is found again.
        model_name="news-ner-{{ dag_run.run_after.strftime('%Y%m%dT%H%M%S') }}",
        training_type="lora",
        nr_epochs="{{ params.nr_epochs }}",
        learning_rate=5e-5,
        extra_fields={"validation_data_percentage": 0.2},
        wait_for="callable",  # the next steps call the new model
        deferrable=True,  # hours of training on the triggerer, not in a worker slot (needs a triggerer)
        poll_interval=2.0,
        wait_timeout=timedelta(hours=6),
    )
    upload_eval >> train  # evaluate only what trains on data that passed the same checks

    evaluate = PioneerEvaluationOperator(
        task_id="evaluate",
        base_model=train.output["job_id"],
        dataset_name=upload_eval.output["dataset_name"],
        min_f1="{{ params.min_f1 }}",
        on_below="skip",  # a model below the gate is never used: everything downstream is skipped
        deferrable=True,
        poll_interval=2.0,
    )

    @task
    def output_path() -> str:
        run_id = get_current_context()["dag_run"].run_id
        return f"{OUTPUT_URL}/model_lifecycle/{re.sub(r'[^A-Za-z0-9_.-]+', '_', run_id).strip('_')}.jsonl"

    out = output_path()
    evaluate >> out

    extract = PioneerInferenceOperator(
        task_id="extract_entities",
        model_id=train.output["job_id"],
        input_path=INPUT_URL,
        output_path=out,
        entities=LABELS,
        # 304 texts in 5 requests of the default 64: all in flight at once (make airflow's emulator
        # takes 250 ms per text, so this step lasts about 16 s there, not 50).
        max_concurrency=5,
    )
    # --8<-- [end:lifecycle]

    @task
    def report(training: dict[str, Any], scores: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
        """One line per step, and the whole as the run's return value."""
        result = {
            "job_id": training["job_id"],
            "model_name": training["model_name"],
            "job_status": training["status"],
            "f1": scores.get("f1"),
            "precision": scores.get("precision"),
            "recall": scores.get("recall"),
            "per_entity_f1": {k: v.get("f1") for k, v in (scores.get("per_entity") or {}).items()},
            "texts": summary.get("total"),
            "succeeded": summary.get("succeeded"),
            "output_path": summary.get("output_path"),
        }
        log.info("Trained %s (%s) as job %s", result["model_name"], result["job_status"], result["job_id"])
        log.info(
            "Evaluation: F1 %s, precision %s, recall %s", result["f1"], result["precision"], result["recall"]
        )
        log.info(
            "Extracted entities from %s texts with the new model into %s",
            result["texts"],
            result["output_path"],
        )
        return result

    report(train.output, evaluate.output, extract.output)


pioneer_model_lifecycle()
