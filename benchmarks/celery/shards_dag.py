"""The DAG that ``benchmarks/celery/shards.py`` runs: one job in ``params.shards`` mapped shards.

Like the example batch DAG's ``extract_entities`` (operator defaults, ``max_concurrency=4``, one pool
slot per shard, no ``requests_per_minute``: each shard paces itself on the account), but the shard
files are already in the bucket (the benchmark puts them there) and ``batch_size`` is the
benchmark's (``PIONEER_BENCH_BATCH_SIZE``), small, so that a few thousand texts make a few thousand
requests and the account's limit binds.
"""

from __future__ import annotations

import os
from typing import Any

from airflow.sdk import Param, dag, get_current_context, task

from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

BATCH_SIZE = int(os.environ.get("PIONEER_BENCH_BATCH_SIZE", "4"))
POOL = os.environ.get("PIONEER_POOL") or "default_pool"


@dag(
    dag_id="pioneer_bench_shards",
    schedule=None,
    catchup=False,
    max_active_runs=1,
    params={
        "prefix": Param("", type="string", description="object storage URL holding in/shard-NNN.jsonl"),
        "shards": Param(8, type="integer", minimum=1, maximum=64),
    },
)
def pioneer_bench_shards() -> None:
    @task
    def plan(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        prefix = str((params or {})["prefix"]).rstrip("/")
        run_id = get_current_context()["dag_run"].run_id
        return [
            {
                "input_path": f"{prefix}/in/shard-{i:03d}.jsonl",
                # Per run: a second arm must not resume the first one's checkpoints.
                "output_path": f"{prefix}/out/{run_id}/shard-{i:03d}.jsonl",
            }
            for i in range(int((params or {})["shards"]))
        ]

    PioneerInferenceOperator.partial(
        task_id="extract",
        pioneer_conn_id="pioneer_default",
        model_id="fastino/gliner2-base-v1",
        entities=["person", "organization", "location", "date", "money"],
        batch_size=BATCH_SIZE,
        max_concurrency=4,
        max_active_tis_per_dag=64,
        pool=POOL,
        progress_interval=5.0,
    ).expand_kwargs(plan())


pioneer_bench_shards()
