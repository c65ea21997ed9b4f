"""Daily batch entity extraction with Pioneer, sharded across workers by dynamic task mapping.

    split_input  ->  extract_entities[0..n)  ->  aggregate_entities  (updates the asset)

* ``split_input`` streams the input JSONL into ``params.shards`` shard files, one per mapped task.
* ``extract_entities`` is one :class:`PioneerInferenceOperator` per shard. Each writes its own
  JSONL (checkpointed, so an Airflow retry never pays twice for items already written) and
  returns its summary. The shards run in parallel on as many workers as the pool allows.
* ``aggregate_entities`` counts the entities per label over every shard, logs a table and
  updates the ``pioneer_news_entities`` asset, so a downstream DAG can be data-triggered:
  ``@dag(schedule=Asset(name="pioneer_news_entities", ...))``.

Environment knobs (all optional; the demo and the tests set them):

* ``PIONEER_EXAMPLE_INPUT``: JSONL of ``{"id": ..., "text": ...}`` records, a local path or any
  ObjectStoragePath URL (``s3://...``). Default: the sample shipped in ``data/news_sample.jsonl``
  beside this file (copy the ``data/`` folder along with the DAG, or set this variable).
* ``PIONEER_EXAMPLE_OUTPUT``: where runs write, a local path or URL. Default:
  ``$AIRFLOW_HOME/pioneer_output``. Shards must be readable by every worker: on a multi-machine
  deployment point this at shared storage (``s3://bucket/pioneer``).
* ``PIONEER_POOL``: the Airflow pool the inference shards run in (default ``default_pool``).
  Create a pool sized to your Pioneer account's concurrency and name it here: its slots are what
  bounds how many shards run at once.

All three are read when the file is parsed: give them the same values on the dag-processor and
on every worker (see ``docs/deploying.md``).
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, ObjectStoragePath, Param, dag, get_current_context, task

try:  # Airflow >= 3.2 exports its timetables from the Task SDK; 3.1 only from core.
    from airflow.sdk import CronTriggerTimetable
except ImportError:  # pragma: no cover - exercised by the Airflow 3.1 leg of make test-matrix
    from airflow.timetables.trigger import CronTriggerTimetable  # type: ignore[no-redef]

try:  # Airflow 3.2+
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # Airflow 3.1
    from airflow.exceptions import AirflowFailException

from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

log = logging.getLogger(__name__)

LABELS = ["organization", "person", "product", "location", "date", "money"]


def _as_url(location: str) -> str:
    """A local path becomes a ``file://`` URL; URLs pass through."""
    if "://" in location:
        return location.rstrip("/")
    return Path(location).expanduser().resolve().as_uri()


INPUT_URL = _as_url(
    os.environ.get("PIONEER_EXAMPLE_INPUT") or str(Path(__file__).parent / "data" / "news_sample.jsonl")
)
OUTPUT_URL = _as_url(
    os.environ.get("PIONEER_EXAMPLE_OUTPUT")
    or str(Path(os.environ.get("AIRFLOW_HOME") or "~/airflow") / "pioneer_output")
)
POOL = os.environ.get("PIONEER_POOL") or "default_pool"
#: The most shards a run may ask for (``params.shards``).
MAX_SHARDS = 64

# One asset for the whole output tree; each asset event's extra says which run directory is new.
NEWS_ENTITIES = Asset(name="pioneer_news_entities", uri=f"{OUTPUT_URL}/news_entities")


@dag(
    dag_id="pioneer_batch_inference",
    description="Extract entities from news sentences with Pioneer, sharded by dynamic task mapping",
    # Midnight UTC, and never a run for a tick that already passed: with a start_date in the past,
    # catchup=False still runs the last midnight's tick the moment the DAG is unpaused (an extra
    # run nobody asked for), and without one a plain "@daily" does the same within 2.4 h after
    # midnight (Airflow's default grace, a tenth of the interval). run_immediately=timedelta(0)
    # makes the first run the next midnight always; trigger the DAG by hand to run now.
    schedule=CronTriggerTimetable("0 0 * * *", timezone="UTC", run_immediately=timedelta(0)),
    catchup=False,
    max_active_runs=1,
    tags=["pioneer", "example"],
    default_args={"owner": "data", "retries": 2, "retry_delay": timedelta(minutes=1)},
    params={
        "model_id": Param("fastino/gliner2-base-v1", type="string", description="Pioneer model or job id"),
        "shards": Param(
            4, type="integer", minimum=1, maximum=MAX_SHARDS, description="mapped inference tasks"
        ),
    },
    doc_md=__doc__,
)
def pioneer_batch_inference() -> None:
    @task
    def split_input(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """Stream the input into ``params.shards`` contiguous shard files; one mapped task each."""
        context = get_current_context()
        shards = int((params or {}).get("shards", 4))
        # Every run gets its own directory, so a re-run never reads another run's checkpoints.
        run_slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", context["dag_run"].run_id).strip("_")
        run_dir = ObjectStoragePath(f"{NEWS_ENTITIES.uri}/{run_slug}")
        (run_dir / "input").mkdir(parents=True, exist_ok=True)
        (run_dir / "entities").mkdir(parents=True, exist_ok=True)

        source = ObjectStoragePath(INPUT_URL)
        if not source.exists():
            # A copied DAG file without its data/ folder lands here: say so instead of a traceback.
            raise AirflowFailException(
                f"Input {INPUT_URL} does not exist: set PIONEER_EXAMPLE_INPUT to your JSONL of "
                '{"id": ..., "text": ...} records, or copy example_dags/data/ beside the DAG file.'
            )
        with source.open("r") as f:
            total = sum(1 for line in f if line.strip())
        if total == 0:
            # Retrying cannot fix the input: fail without Airflow retries.
            raise AirflowFailException(
                f"{INPUT_URL} has no records: give PIONEER_EXAMPLE_INPUT a non-empty JSONL file."
            )
        shards = min(shards, total)
        per_shard = -(-total // shards)  # ceil: contiguous shards keep the input order per shard

        plan: list[dict[str, str]] = []
        with source.open("r") as f:
            lines = (line for line in f if line.strip())
            for index in range(shards):
                shard_in = run_dir / "input" / f"shard-{index:03d}.jsonl"
                count = 0
                with shard_in.open("w") as out:
                    for _, line in zip(range(per_shard), lines, strict=False):
                        out.write(line if line.endswith("\n") else line + "\n")
                        count += 1
                # --8<-- [start:plan]
                plan.append(
                    {
                        "input_path": str(shard_in),
                        "output_path": str(run_dir / "entities" / f"shard-{index:03d}.jsonl"),
                        # The mapped task's name in the UI (map_index_template below), not 0, 1, 2...
                        "map_label": f"shard {index} · {count:,} texts",
                    }
                )
                # --8<-- [end:plan]
        log.info("Split %d records from %s into %d shards under %s", total, INPUT_URL, len(plan), run_dir)
        return plan

    shards = split_input()

    # --8<-- [start:extract]
    extract = PioneerInferenceOperator.partial(
        task_id="extract_entities",
        pioneer_conn_id="pioneer_default",
        model_id="{{ params.model_id }}",
        entities=LABELS,
        threshold=0.5,
        # batch_size: the operator's default, 64 texts per request: half the requests (and so half
        # the share of the rate limit) that 32 would need. A killed shard re-sends at most its
        # in-flight window, 2 x max_concurrency batches (512 texts here).
        max_concurrency=4,
        # No requests_per_minute: each shard paces itself against the account's limit (the server's
        # rate-limit headers, else 429s), so shards running at once share it without dividing by
        # hand. How many run at once is the pool's to say (one slot per concurrent shard, shared
        # with every DAG on the account): the DAG lets every shard of a run start, whatever
        # params.shards is. A fixed smaller bound here ran 8 shards on 8 free slots in two waves.
        max_active_tis_per_dag=MAX_SHARDS,
        pool=POOL,
        progress_interval=5.0,  # a progress line every 5 s in the task log (default 15)
        map_index_template="{{ task.map_label }}",  # each shard's "map_label" from split_input's plan
    ).expand_kwargs(shards)
    # --8<-- [end:extract]

    @task(outlets=[NEWS_ENTITIES])
    def aggregate_entities(summaries: list[dict[str, Any]], plan: list[dict[str, str]]) -> dict[str, Any]:
        """Count entities per label over every shard's output, log a table, update the asset."""
        # One slice fetches every shard's summary at once (iterating the lazy XCom sequence asks
        # item by item and logs a "not found" error at its end).
        summaries = list(summaries[:])
        per_label: Counter[str] = Counter()
        items = failed = 0
        for shard in plan:
            with ObjectStoragePath(shard["output_path"]).open("r") as f:
                for line in f:
                    if not line.strip():
                        continue
                    record = json.loads(line)
                    items += 1
                    if "error" in record:
                        failed += 1
                        continue
                    for label, found in (record.get("result") or {}).get("entities", {}).items():
                        per_label[label] += len(found)

        width = max(len(label) for label in LABELS)
        rows = [f"{'label':<{width}}  {'entities':>8}", f"{'-' * width}  {'-' * 8}"]
        rows += [f"{label:<{width}}  {per_label.get(label, 0):>8}" for label in LABELS]
        rows.append(f"{'total':<{width}}  {sum(per_label.values()):>8}")
        output_dir = str(ObjectStoragePath(plan[0]["output_path"]).parent) if plan else ""
        log.info("Entities per label (%d items, %d failed):\n%s", items, failed, "\n".join(rows))

        summary = {
            "items": items,
            "succeeded": items - failed,
            "failed": failed,
            "shards": len(plan),
            "entities_per_label": {label: per_label.get(label, 0) for label in LABELS},
            "token_usage": sum(int(s.get("token_usage") or 0) for s in summaries),
            "requests": sum(int(s.get("requests") or 0) for s in summaries),
            "retries": sum(int(s.get("retries") or 0) for s in summaries),
            "output_path": output_dir,
        }
        context = get_current_context()
        context["outlet_events"][NEWS_ENTITIES].extra = {
            "output_path": output_dir,
            "items": items,
            "failed": failed,
        }
        return summary

    aggregate_entities(extract.output, shards)


pioneer_batch_inference()
