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
from tests.dags.support import load_dag, xcom_value
from tests.object_stores import checkpointed_records, incomplete_checkpoint, manifest_of

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
    assert stored["xcoms"]["infer[-1]._link_PioneerModelLink"] == "https://docs.pioneer.ai/concepts/models"
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
    checkpoint = manifest_of(str(out))
    partial = checkpointed_records(str(out))
    assert checkpoint is not None and checkpoint["records"] == len(partial) <= 30
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
        checkpoint = manifest_of(str(out))
        assert checkpoint is not None and 0 < checkpoint["records"] < n

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


def test_a_null_result_fails_the_first_try_and_airflows_retry_resumes_and_finishes(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    """A 200 whose result holds null is not a success: nothing of that batch is written, the retry re-sends it."""
    rows = write_input(tmp_path / "in.jsonl", 40, "null")
    good = {"entities": {"person": []}}
    emu.inject(
        status=200, body={"result": [good, None, good, good, good], "token_usage": 5}, times=1, after=3
    )
    out = tmp_path / "out.jsonl"
    dag = load_dag("pioneer_test_inference_retry")
    dr = dag.test(run_conf={"input_path": str(tmp_path / "in.jsonl"), "output_path": str(out)})
    (ti,) = task_instances(dr)
    assert ti.state == "success" and ti.try_number == 2  # the first try stopped as retryable
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    assert [r["result"] for r in records] == [emu.extract(r["text"], LABELS) for r in rows]
    counts = emu.counters()["text_counts"]
    assert all(counts[r["text"]] == 1 for r in rows)  # the answered part was not sent again
    summary = json.loads(stored_xcoms_and_rendered(dag.dag_id, dr.run_id))["xcoms"][
        "infer[-1].pioneer_summary"
    ]
    assert summary["skipped_from_checkpoint"] == 15 and summary["succeeded"] == 40


def test_texts_from_an_upstream_task_that_returned_nothing_fail_saying_so(
    emu: PioneerEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    dag = load_dag("pioneer_test_inference_upstream_none")
    dr = dag.test()
    states = {ti.task_id: (ti.state, ti.try_number) for ti in task_instances(dr)}
    assert states == {"load_texts": ("success", 1), "infer": ("failed", 1)}  # a verdict: no retries
    logged = "".join(capfd.readouterr())
    assert "texts resolved to None: the upstream task that feeds it returned nothing" in logged
    assert "Give exactly one of texts" not in logged
    assert emu.counters()["requests"].get("POST /inference", 0) == 0


def test_an_execution_timeout_checkpoints_what_is_done_and_nothing_is_sent_after_it(
    emu: PioneerEmulator, tmp_path: Path
) -> None:
    rows = write_input(tmp_path / "in.jsonl", 400, "timeout")
    emu.set_latency(300)  # 80 requests, 3 at a time: far longer than the task's 2 s timeout
    out = tmp_path / "out.jsonl"
    dag = load_dag("pioneer_test_inference_timeout")
    dr = dag.test(run_conf={"input_path": str(tmp_path / "in.jsonl"), "output_path": str(out)})
    (ti,) = task_instances(dr)
    assert ti.state == "failed"
    sent = emu.counters()["requests"]["POST /inference"]
    time.sleep(1.0)  # longer than three requests on the wire: any worker still sending would show
    assert emu.counters()["requests"]["POST /inference"] == sent
    assert not out.exists()
    partial = incomplete_checkpoint(str(out), rows)
    # The attempt still reports what it did (the Pioneer view and the metrics read this).
    summary = xcom_value(dag.dag_id, dr.run_id, "infer", "pioneer_summary")
    assert (summary["total"], summary["succeeded"], summary["failed"]) == (400, len(partial), 0)


class _PushOnly:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def test_sigterm_stops_the_run_at_once_checkpoints_and_the_next_attempt_resumes(
    emu: PioneerEmulator, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """What Airflow does on "mark failed" or a worker shutdown: SIGTERM, whose handler calls on_kill."""
    import threading

    window_texts = 2 * 3 * 5  # batch_size=5, max_concurrency=3: the runner's window is 2 x 3 batches
    n = 400  # 80 requests at 1,200/min: about 4 s, the signal comes after 25
    rows = write_input(tmp_path / "in.jsonl", n, "term")
    out = tmp_path / "out.jsonl"
    sent_at_term: list[int] = []

    def send_sigterm_mid_run() -> None:
        deadline = time.monotonic() + 60
        while emu.counters()["inference_requests_committed"] < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
        sent_at_term.append(emu.counters()["requests"]["POST /inference"])
        # To this very process: the task runner's handler runs in the main thread, inside dag.test().
        os.kill(os.getpid(), signal.SIGTERM)

    dag = load_dag("pioneer_test_inference_once")
    previous = signal.getsignal(signal.SIGTERM)
    killer = threading.Thread(target=send_sigterm_mid_run, daemon=True)
    killer.start()
    try:
        dr = dag.test(run_conf={"input_path": str(tmp_path / "in.jsonl"), "output_path": str(out)})
    finally:
        killer.join(timeout=60)
        signal.signal(signal.SIGTERM, previous)
    (ti,) = task_instances(dr)
    assert ti.state == "failed"
    sent = emu.counters()["requests"]["POST /inference"]
    # At most the requests that had passed the pacer when the signal came (max_concurrency).
    assert sent - sent_at_term[0] <= 3, (sent, sent_at_term)
    assert "Airflow stopped this task" in "".join(capfd.readouterr())
    assert not out.exists()
    checkpoint = manifest_of(str(out))
    partial = checkpointed_records(str(out))
    assert checkpoint is not None and 0 < checkpoint["records"] == len(partial) < n
    assert [r["id"] for r in partial] == [r["id"] for r in rows[: len(partial)]]

    # The next attempt (same task settings, a faster pace) resumes from that checkpoint.
    from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

    resumed = PioneerInferenceOperator(
        task_id="infer", model_id="fastino/gliner2-base-v1", entities=LABELS,
        input_path=str(tmp_path / "in.jsonl"), output_path=str(out), batch_size=5, max_concurrency=3,
        requests_per_minute=60_000,
    )  # fmt: skip
    emu.set_rate_limit(None)
    summary = resumed.execute({"ti": _PushOnly()})  # type: ignore[arg-type]
    assert summary["skipped_from_checkpoint"] == len(partial) and summary["succeeded"] == n
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in records] == [r["id"] for r in rows]
    rebilled = sum(c - 1 for c in emu.counters()["text_counts"].values())
    assert rebilled <= window_texts, f"{rebilled} texts billed twice; the window is {window_texts}"
