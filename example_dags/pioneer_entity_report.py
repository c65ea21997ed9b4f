"""Data-triggered downstream of ``pioneer_batch_inference``: runs whenever its asset is updated.

It has no time schedule: each successful batch run updates the ``pioneer_news_entities`` asset
(the event's extra names the run's output directory), and that starts this DAG, which lists the
most mentioned organizations and people of that run.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

from airflow.sdk import Asset, ObjectStoragePath, dag, task

log = logging.getLogger(__name__)

TOP = 5


def _as_url(location: str) -> str:
    if "://" in location:
        return location.rstrip("/")
    return Path(location).expanduser().resolve().as_uri()


# The very asset pioneer_batch_inference.py updates: same name AND uri (computed the same way).
# Airflow 3.3 starts runs for Asset.ref(name=...) too, but hands them no triggering events.
OUTPUT_URL = _as_url(
    os.environ.get("PIONEER_EXAMPLE_OUTPUT")
    or str(Path(os.environ.get("AIRFLOW_HOME") or "~/airflow") / "pioneer_output")
)
# --8<-- [start:report]
NEWS_ENTITIES = Asset(name="pioneer_news_entities", uri=f"{OUTPUT_URL}/news_entities")


@dag(
    dag_id="pioneer_entity_report",
    description="Top organizations and people of each batch run, triggered by its asset",
    schedule=NEWS_ENTITIES,
    start_date=datetime(2025, 1, 1),
    catchup=False,
    tags=["pioneer", "example"],
    doc_md=__doc__,
)
def pioneer_entity_report() -> None:
    @task
    def top_entities(triggering_asset_events: Any = None) -> dict[str, Any]:
        """Count mentions per entity text in the output directory each asset event names."""
        dirs = [
            event.extra["output_path"]
            for events in (triggering_asset_events or {}).values()
            for event in events
            if (event.extra or {}).get("output_path")
        ]
        if not dirs:
            log.info("No asset event to report on (this run was triggered by hand).")
            return {}
        mentions: dict[str, Counter[str]] = {"organization": Counter(), "person": Counter()}
        for directory in dirs:
            for shard in sorted(ObjectStoragePath(directory).glob("shard-*.jsonl")):
                with shard.open("r") as f:
                    for line in f:
                        entities = (json.loads(line).get("result") or {}).get("entities", {})
                        for label, counter in mentions.items():
                            counter.update(e["text"] for e in entities.get(label, []))
        report = {label: dict(counter.most_common(TOP)) for label, counter in mentions.items()}
        for label, top in report.items():
            log.info(
                "Top %s in %s: %s", label, ", ".join(dirs), ", ".join(f"{t} ({n})" for t, n in top.items())
            )
        return report

    top_entities()


pioneer_entity_report()
# --8<-- [end:report]
