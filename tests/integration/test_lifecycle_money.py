"""Money in the lifecycle, over real HTTP to the emulator: the job list read on every page, the
trigger's event checked on resume, a killed deferred wait stopping its paid job (and a triggerer
restart not stopping it), and a dataset upload streamed rather than read into memory.

The trigger-cancellation tests drive the trigger through Airflow's own ``TriggerRunner``
(``run_trigger`` and ``cancel_triggers``, the code the triggerer runs), so each supported Airflow
minor takes its own path: 3.3+ calls ``on_kill`` on a user's kill, 3.1 only cancels and the trigger
asks its task instance's state. That state is the one thing not real here: there is no supervisor
in a test, so the trigger's ``_task_state`` answers what Airflow's DB would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer.lifecycle.api import LifecycleClient
from airflow_provider_pioneer.testing import PioneerEmulator
from airflow_provider_pioneer.triggers.lifecycle import PioneerTrainingJobTrigger
from tests.integration.lifecycle_support import FAST, ROW, lifecycle_client, ready_dataset


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[PioneerEmulator]:
    with PioneerEmulator() as e:
        e.set_lifecycle(**FAST)
        monkeypatch.setenv(
            "AIRFLOW_CONN_PIONEER_DEFAULT",
            json.dumps({"conn_type": "pioneer", "host": e.url, "password": e.api_key}),
        )
        yield e


@pytest.fixture
def api(emu: PioneerEmulator) -> Iterator[LifecycleClient]:
    yield from lifecycle_client(emu)


def submit(api: LifecycleClient, model_name: str) -> str:
    body = {"base_model": "fastino/gliner2-base-v1", "datasets": [{"name": "ds"}], "model_name": model_name,
            "nr_epochs": 2}  # fmt: skip
    return str(api.create_training_job(body)["id"])


# -- the job list ----------------------------------------------------------------------------------
def test_the_job_list_and_the_look_for_a_lost_submit_read_every_page(
    emu: PioneerEmulator, api: LifecycleClient
) -> None:
    ready_dataset(api)
    emu.set_lifecycle(list_page_max=2)  # the server pages below the 200 asked for
    ids = [submit(api, f"m-{i}") for i in range(5)]
    assert [job["id"] for job in api.list_training_jobs()] == ids[::-1]  # newest first, all 3 pages
    emu.reset_counters()
    # The oldest job is on the last page: the reattach after a lost submit must see it.
    assert [job["id"] for job in api.find_jobs_by_model_name("m-0")] == [ids[0]]
    assert emu.counters()["requests"]["GET /felix/training-jobs"] == 3


def test_the_look_for_a_lost_submit_stops_paging_at_jobs_older_than_the_run(
    emu: PioneerEmulator, api: LifecycleClient
) -> None:
    from datetime import UTC, datetime, timedelta

    ready_dataset(api)
    emu.set_lifecycle(list_page_max=2)
    for i in range(5):
        submit(api, f"old-{i}")
    emu.reset_counters()
    later = datetime.now(UTC) + timedelta(hours=1)  # a run started after every one of them
    assert api.find_jobs_by_model_name("old-0", created_since=later) == []
    assert emu.counters()["requests"]["GET /felix/training-jobs"] == 1


# -- the event on resume ---------------------------------------------------------------------------
def test_an_error_event_carries_the_http_status_apart_from_the_jobs_status(emu: PioneerEmulator) -> None:
    from airflow_provider_pioneer.operators._lifecycle_common import run_trigger_here

    event = run_trigger_here(PioneerTrainingJobTrigger("no-such-job", poll_interval=0.05))
    assert event["event"] == "error" and event["http_status"] == 404
    assert event["status"] is None  # never an HTTP code: the job's state was never read
    assert event["retryable"] is False


# -- a killed deferred wait ------------------------------------------------------------------------
class _TriggerWithState(PioneerTrainingJobTrigger):
    """The task instance state Airflow's DB holds (read only on Airflow 3.1, see the module docstring)."""

    ti_state: str | None = "deferred"

    async def _task_state(self) -> str | None:
        return self.ti_state


def _drive(emu: PioneerEmulator, trigger: PioneerTrainingJobTrigger, *, user_action: bool) -> None:
    """Run ``trigger`` in Airflow's TriggerRunner until it has polled, then cancel it as Airflow does."""
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    trigger.timeout_after = None  # type: ignore[attr-defined]  # what Airflow 3.1's triggerer sets on each trigger

    async def scenario() -> None:
        runner = TriggerRunner()
        task = asyncio.create_task(runner.run_trigger(1, trigger))
        runner.triggers[1] = {"task": task, "name": "train", "events": 0, "is_watcher": False}
        deadline = time.monotonic() + 30
        while emu.counters()["requests"].get(f"GET /felix/training-jobs/{trigger.object_id}", 0) < 2:
            assert time.monotonic() < deadline and not task.done()
            await asyncio.sleep(0.05)
        if user_action:  # the user marked the task failed / cleared it: the DB row is gone
            runner.to_cancel.append(1)
            await runner.cancel_triggers()
        else:  # the triggerer shuts down (a restart, or a hand-over to another triggerer)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


@pytest.fixture
def running_job(emu: PioneerEmulator, api: LifecycleClient, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AIRFLOW_DISABLE_GREENBACK_PORTAL", "true")
    ready_dataset(api)
    emu.set_lifecycle(epoch_s=60)  # runs far longer than the test
    return submit(api, "m-kill")


def test_a_user_killing_the_deferred_task_stops_its_paid_job(emu: PioneerEmulator, running_job: str) -> None:
    trigger = _TriggerWithState(running_job, poll_interval=0.05, stop_on_kill=True)
    trigger.ti_state = "failed"
    _drive(emu, trigger, user_action=True)
    assert emu.lifecycle_counters().get("jobs_stopped", 0) == 1
    assert emu.lifecycle_counters()["jobs"][running_job] == "cancelled"


def test_a_triggerer_restart_leaves_the_job_running(emu: PioneerEmulator, running_job: str) -> None:
    trigger = _TriggerWithState(running_job, poll_interval=0.05, stop_on_kill=True)
    _drive(emu, trigger, user_action=False)  # the task is still deferred: it resumes elsewhere
    assert emu.lifecycle_counters().get("jobs_stopped", 0) == 0
    assert emu.lifecycle_counters()["jobs"][running_job] == "running"


def test_without_stop_on_kill_a_kill_leaves_the_job_running(emu: PioneerEmulator, running_job: str) -> None:
    trigger = _TriggerWithState(running_job, poll_interval=0.05, stop_on_kill=False)
    trigger.ti_state = "failed"
    _drive(emu, trigger, user_action=True)
    assert emu.lifecycle_counters().get("jobs_stopped", 0) == 0


# -- the dataset upload ----------------------------------------------------------------------------
class _Store(dict[str, Any]):
    """The task state store's interface (get/set), for an operator run outside a DAG run."""

    def set(self, key: str, value: Any) -> None:
        self[key] = value


class _TI:
    dag_id, task_id, run_id, map_index = "d", "upload", "r", -1

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def test_a_dataset_file_is_streamed_to_the_upload_url_not_read_into_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_pioneer.operators.datasets import PioneerDatasetUploadOperator

    # The emulator in its own process: only this process's (the operator's) memory is measured.
    with PioneerEmulator(subprocess=True) as emu:
        emu.set_lifecycle(**FAST)
        monkeypatch.setenv(
            "AIRFLOW_CONN_PIONEER_DEFAULT",
            json.dumps({"conn_type": "pioneer", "host": emu.url, "password": emu.api_key}),
        )
        line = json.dumps({**ROW, "text": ROW["text"] + " " + "x" * 900}) + "\n"

        for name, rows in (("warm", 1), ("big", 4000)):  # big: about 3.9 MB
            (tmp_path / f"{name}.jsonl").write_text(line * rows)
        size = (tmp_path / "big.jsonl").stat().st_size

        def upload(name: str) -> dict[str, Any]:
            op = PioneerDatasetUploadOperator(
                task_id="upload", input_path=f"file://{tmp_path / name}.jsonl", dataset_name=name,
                poll_interval=0.05,
            )  # fmt: skip
            return op.execute({"ti": _TI(), "task_state_store": _Store()})  # type: ignore[arg-type]

        upload("warm")  # the first run imports what it needs (lineage, fsspec...): not measured
        tracemalloc.start()
        try:
            result = upload("big")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert result["status"] == "ready" and result["size"] == 4000
        assert emu.lifecycle_counters()["presigned_puts"] == 2
    assert peak < size / 2, f"peak {peak} bytes for a {size}-byte file"  # read whole: above the size
