"""OpenLineage: the inference operator's input and output files as datasets, the model as a run facet.

With apache-airflow-providers-openlineage installed (the ``test-providers`` extra; tests marked
``providers``), through the provider's own
``ExtractorManager`` after a real run against the emulator; without it (imports blocked in a child
Python), the operator runs the same and reports no lineage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_pioneer.lineage import dataset_name
from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator
from airflow_provider_pioneer.testing import PioneerEmulator

MODEL = "fastino/gliner2-base-v1"
CHILD = Path(__file__).with_name("lineage_child.py")


class _TI:
    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


@pytest.fixture
def emu_conn(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with PioneerEmulator(latency_ms=0) as emu:
        conn = json.dumps({"conn_type": "pioneer", "host": emu.url, "password": emu.api_key})
        monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", conn)
        yield conn


def _input(tmp_path: Path, n: int = 10) -> Path:
    path = tmp_path / "in.jsonl"
    path.write_text(
        "".join(json.dumps({"id": i, "text": f"Alice Smith joined Acme Corp {i}."}) + "\n" for i in range(n))
    )
    return path


def test_dataset_names_follow_openlineage_naming() -> None:
    assert dataset_name("s3://bucket/runs/2026/in.jsonl") == ("s3://bucket", "runs/2026/in.jsonl")
    assert dataset_name("gs://b/x.jsonl") == ("gs://b", "x.jsonl")
    assert dataset_name("file:///data/in.jsonl") == ("file", "/data/in.jsonl")
    assert dataset_name("file://host7/data/in.jsonl") == ("file://host7", "/data/in.jsonl")
    assert dataset_name("/data/in.jsonl") == ("file", "/data/in.jsonl")


@pytest.mark.providers
def test_openlineage_sees_the_files_as_datasets_and_the_model_as_a_facet(
    emu_conn: str, tmp_path: Path
) -> None:
    from airflow.providers.openlineage.extractors.manager import ExtractorManager
    from airflow.utils.state import TaskInstanceState
    from openlineage.client.serde import Serde

    source, out = _input(tmp_path), tmp_path / "out" / "entities.jsonl"
    op = PioneerInferenceOperator(
        task_id="infer",
        model_id=MODEL,
        entities=["person", "organization"],
        input_path=source.as_uri(),
        output_path=out.as_uri(),
    )
    summary = op.execute({"ti": _TI()})  # type: ignore[arg-type]
    assert summary["succeeded"] == 10

    ti = SimpleNamespace(task=op, dag_id=op.dag_id, task_id=op.task_id, map_index=-1, try_number=1)
    lineage = ExtractorManager().extract_metadata(
        SimpleNamespace(run_id="manual__1"), op, TaskInstanceState.SUCCESS, ti
    )
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(source))]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(out))]
    facet = json.loads(Serde.to_json(lineage.run_facets["pioneer"]))
    assert facet["modelId"] == MODEL
    assert facet["_schemaURL"].startswith("https://openlineage.io/")


@pytest.mark.providers
def test_inline_texts_have_no_input_dataset() -> None:
    op = PioneerInferenceOperator(task_id="infer", model_id=MODEL, entities=["person"], texts=["Alice"])
    lineage = op.get_openlineage_facets_on_complete(None)
    assert lineage.inputs == [] and lineage.outputs == []
    assert lineage.run_facets["pioneer"].modelId == MODEL


def test_without_the_openlineage_provider_the_operator_runs_and_reports_none(
    emu_conn: str, tmp_path: Path
) -> None:
    source, out = _input(tmp_path, 7), tmp_path / "entities.jsonl"
    result = subprocess.run(
        [sys.executable, str(CHILD), source.as_uri(), out.as_uri()],
        env={**os.environ, "AIRFLOW_CONN_PIONEER_DEFAULT": emu_conn},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["summary"]["succeeded"] == 7
    assert report["lineage"] == "None"
    assert report["imported"] == []
    assert len(out.read_text().splitlines()) == 7
