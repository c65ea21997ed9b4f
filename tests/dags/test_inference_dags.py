"""Whole DAG runs of PioneerInferenceOperator through dag.test(), and a real process kill + resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer.testing import PioneerEmulator
from tests.dags.support import load_dag

pytestmark = pytest.mark.dags

LABELS = ["person", "organization", "location"]


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch, airflow_db: Path) -> Iterator[PioneerEmulator]:
    # The June 2026 API (1,200 rpm per key): these runs were calibrated on it.
    with PioneerEmulator(latency_ms=5, rate_limit_per_minute=1200, api_profile="legacy") as e:
        monkeypatch.setenv(
            "AIRFLOW_CONN_PIONEER_DEFAULT",
            json.dumps({"conn_type": "pioneer", "host": e.url, "password": e.api_key}),
        )
        yield e


def write_input(path: Path, n: int, prefix: str) -> list[dict[str, str]]:
    names = ["Alice Smith", "Bob Jones", "Maria Garcia", "Chen Wei"]
    rows = [
        {"id": f"{prefix}-{i}", "text": f"{names[i % 4]} met Globex in Lagos, {prefix} note {i}."}
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def task_instances(dag_run: Any) -> list[Any]:
    from airflow.utils.session import create_session

    with create_session() as session:
        tis = dag_run.get_task_instances(session=session)
        session.expunge_all()
    return list(tis)


def stored_xcoms_and_rendered(dag_id: str, run_id: str) -> str:
    """Everything the metadata DB keeps of the run's XComs and rendered template fields, as text."""
    from airflow.models.renderedtifields import RenderedTaskInstanceFields
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        xcoms = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        rtifs = session.query(RenderedTaskInstanceFields).filter_by(dag_id=dag_id, run_id=run_id).all()
        return json.dumps(
            {
                "xcoms": {f"{x.task_id}[{x.map_index}].{x.key}": x.value for x in xcoms},
                "rendered": [r.rendered_fields for r in rtifs],
            },
            default=str,
        )


def test_file_dag_run_writes_every_record_and_pushes_summary_and_link(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    rows = write_input(tmp_path / "in.jsonl", 60, "run")
    out = tmp_path / "out.jsonl"
    dag = load_dag("pioneer_test_inference_file")
    dr = dag.test(run_conf={"input_path": f"file://{tmp_path / 'in.jsonl'}", "output_path": str(out)})
    assert [ti.state for ti in task_instances(dr)] == ["success"]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert records[7]["result"] == emu.extract(rows[7]["text"], LABELS)
    stored = json.loads(stored_xcoms_and_rendered(dag.dag_id, dr.run_id))
    summary = stored["xcoms"]["infer[-1].pioneer_summary"]
    assert summary["total"] == summary["succeeded"] == 60 and summary["requests"] == 12
    assert stored["xcoms"]["infer[-1]._link_PioneerModelLink"] == (
        "https://agent.pioneer.ai/models/fastino/gliner2-base-v1"
    )
    assert emu.api_key not in json.dumps(stored)


def test_402_fails_the_task_without_airflow_retries_and_keeps_the_done_part(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    rows = write_input(tmp_path / "in.jsonl", 200, "pay")
    emu.inject(status=402, after=6)
    out = tmp_path / "out.jsonl"
    dag = load_dag("pioneer_test_inference_file")
    dr = dag.test(run_conf={"input_path": str(tmp_path / "in.jsonl"), "output_path": str(out)})
    (ti,) = task_instances(dr)
    assert ti.state == "failed" and ti.try_number == 1  # retries=2 in the DAG, none used
    c = emu.counters()
    # max_concurrency=3: only requests already on the wire when the first 402 came back may follow it.
    assert 1 <= c["statuses"]["402"] <= 3 and c["requests"]["POST /inference"] == 6 + c["statuses"]["402"]
    assert not out.exists()
    checkpoint = json.loads((tmp_path / "out.jsonl.checkpoint.json").read_text())
    partial = [json.loads(line) for line in (tmp_path / "out.jsonl.partial").read_text().splitlines()]
    assert checkpoint["records"] == len(partial) <= 30
    assert [r["id"] for r in partial] == [r["id"] for r in rows[: len(partial)]]
    assert emu.api_key not in stored_xcoms_and_rendered(dag.dag_id, dr.run_id)


def test_mapped_shards_each_write_their_output_in_a_pool(emu: PioneerEmulator, tmp_path: Path) -> None:
    from airflow.models.pool import Pool
    from airflow.utils.session import create_session

    with create_session() as session:
        if not session.query(Pool).filter_by(pool="pioneer_test_pool").first():
            session.add(Pool(pool="pioneer_test_pool", slots=1, include_deferred=False))
    dag = load_dag("pioneer_test_inference_mapped")
    dr = dag.test(run_conf={"output_dir": str(tmp_path)})
    infer = [ti for ti in task_instances(dr) if ti.task_id == "infer"]
    assert sorted(ti.map_index for ti in infer) == [0, 1, 2] and {ti.state for ti in infer} == {"success"}
    assert {ti.pool for ti in infer} == {"pioneer_test_pool"}
    for shard in range(3):
        records = [json.loads(line) for line in (tmp_path / f"shard-{shard}.jsonl").read_text().splitlines()]
        assert [r["id"] for r in records] == [f"d{i}" for i in range(shard * 10, shard * 10 + 10)]
    assert emu.counters()["texts_committed"] == 30


_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {repo!r})
    from tests.dags.support import load_dag
    dag = load_dag("pioneer_test_inference_file")
    dr = dag.test(run_conf={{"input_path": {input!r}, "output_path": {output!r}}})
    """
)


def test_killed_run_resumes_without_duplicates_and_resends_at_most_the_window(
    tmp_path: Path, airflow_db: Path
) -> None:
    # The DAG's task: batch_size=5, max_concurrency=3, so the runner's window is 2 x 3 batches.
    window_texts = 2 * 3 * 5
    n = 400
    rows = write_input(tmp_path / "in.jsonl", n, "kill")
    out = tmp_path / "out.jsonl"
    repo = str(Path(__file__).resolve().parents[2])
    script = _CHILD.format(repo=repo, input=str(tmp_path / "in.jsonl"), output=str(out))
    with PioneerEmulator(
        latency_ms=20, rate_limit_per_minute=1200, subprocess=True, api_profile="legacy"
    ) as emu:
        env = dict(os.environ)
        env["AIRFLOW_CONN_PIONEER_DEFAULT"] = json.dumps(
            {"conn_type": "pioneer", "host": emu.url, "password": emu.api_key}
        )
        child = subprocess.Popen(
            [sys.executable, "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while emu.counters()["inference_requests_committed"] < 25:
                assert child.poll() is None, "the run ended before it could be killed"
                assert time.monotonic() < deadline, "the run made no progress"
                time.sleep(0.05)
            os.killpg(child.pid, signal.SIGKILL)  # a real kill: no cleanup, no except, no finally
            child.wait(timeout=30)
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
        assert not out.exists()
        checkpoint = json.loads((tmp_path / "out.jsonl.checkpoint.json").read_text())
        assert 0 < checkpoint["records"] < n

        second = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
        )
        assert second.returncode == 0, second.stderr[-2000:]
        counts = emu.counters()["text_counts"]

    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows]  # complete, in order, no duplicates
    assert all("result" in r for r in records)
    assert sum(counts.get(r["text"], 0) for r in rows) >= n and set(counts) == {r["text"] for r in rows}
    rebilled = sum(c - 1 for c in counts.values())
    print(f"re-billed after the kill: {rebilled} texts (window {window_texts})")
    assert rebilled <= window_texts, f"{rebilled} texts billed twice; the window is {window_texts}"
    assert emu.api_key not in second.stdout + second.stderr
