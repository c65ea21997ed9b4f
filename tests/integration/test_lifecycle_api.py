"""The lifecycle calls over real HTTP against the emulator, in each documented variant."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_pioneer.exceptions import PioneerError, PioneerRateLimitError
from airflow_provider_pioneer.lifecycle.aio import AsyncPioneerReader, ConnectionSettings
from airflow_provider_pioneer.lifecycle.api import LifecycleClient
from airflow_provider_pioneer.testing import PioneerEmulator
from airflow_provider_pioneer.urls import STOP_TRAINING_JOB, TRAINING_JOB
from tests.integration.lifecycle_support import FAST, lifecycle_client, ready_dataset


@pytest.fixture
def emu() -> Iterator[PioneerEmulator]:
    with PioneerEmulator() as e:
        e.set_lifecycle(**FAST)
        yield e


@pytest.fixture
def api(emu: PioneerEmulator) -> Iterator[LifecycleClient]:
    yield from lifecycle_client(emu)


def body(model_name: str = "m") -> dict[str, Any]:
    return {
        "base_model": "fastino/gliner2-base-v1",
        "datasets": [{"name": "ds"}],
        "model_name": model_name,
        "nr_epochs": 2,
    }


@pytest.mark.parametrize("field", ["presigned_url", "upload_url"])
def test_the_upload_url_is_read_in_either_name_and_the_put_carries_no_key(
    emu: PioneerEmulator, api: LifecycleClient, field: str
) -> None:
    emu.set_lifecycle(upload_url_field=field)
    ready_dataset(api)
    counters = emu.lifecycle_counters()
    assert counters["presigned_puts"] == 1 and counters.get("presigned_puts_with_key", 0) == 0


def test_the_emulator_refuses_a_presigned_put_that_carries_a_key(
    emu: PioneerEmulator, api: LifecycleClient
) -> None:
    import requests

    upload = api.request_upload("ds")
    answer = requests.put(upload["upload_url"], data=b"{}", headers={"X-API-Key": emu.api_key}, timeout=10)
    assert answer.status_code == 400 and emu.lifecycle_counters()["presigned_puts_with_key"] == 1


def test_the_same_idempotency_key_names_the_same_job(emu: PioneerEmulator, api: LifecycleClient) -> None:
    ready_dataset(api)
    first = api.create_training_job(body(), idempotency_key="k-1")
    with pytest.raises(PioneerError) as raised:
        api.create_training_job(body(), idempotency_key="k-1")
    assert raised.value.status == 409 and raised.value.code == "duplicate_training_submission"
    from airflow_provider_pioneer.operators.training import _duplicate_job_id

    assert _duplicate_job_id(raised.value) == first["id"]
    assert emu.lifecycle_counters()["jobs_submitted"] == 1


def test_submits_past_20_a_minute_get_a_429_with_retry_after(
    emu: PioneerEmulator, api: LifecycleClient
) -> None:
    ready_dataset(api)
    for i in range(20):
        api.create_training_job(body(f"m{i}"))
    with pytest.raises(PioneerRateLimitError) as raised:
        api.create_training_job(body("m20"))
    assert raised.value.retry_after is not None and raised.value.retry_after > 0
    assert emu.lifecycle_counters()["jobs_submitted"] == 20  # sent once, never retried by the client


@pytest.mark.parametrize("list_key", ["training_jobs", "jobs"])
def test_jobs_are_found_by_model_name_in_either_list_shape(
    emu: PioneerEmulator, api: LifecycleClient, list_key: str
) -> None:
    emu.set_lifecycle(list_key=list_key)
    ready_dataset(api)
    job = api.create_training_job(body("needle"))
    api.create_training_job(body("other"))
    assert [j["id"] for j in api.find_jobs_by_model_name("needle")] == [job["id"]]


@pytest.mark.parametrize(("style", "stopped"), [("pioneer", "cancelled"), ("fastino", "stopped")])
def test_stop_ends_in_the_state_each_doc_version_names(
    emu: PioneerEmulator, api: LifecycleClient, style: str, stopped: str
) -> None:
    emu.set_lifecycle(status_style=style, epoch_s=30)
    ready_dataset(api)
    job = api.create_training_job(body())
    assert api.stop_training_job(job["id"])["status"] == stopped
    assert api.get_training_job(job["id"])["status"] == stopped
    logs = [e["message"] for e in api.get_training_logs(job["id"])]
    assert logs[-1] == "Stop requested; training stopped"


def test_a_training_job_id_answers_404_then_409_then_serves(
    emu: PioneerEmulator, api: LifecycleClient
) -> None:
    emu.set_lifecycle(epoch_s=0.3, normalize_s=0.6)
    ready_dataset(api)
    job = api.create_training_job(body())
    seen = []
    deadline = time.monotonic() + 10
    while not seen or seen[-1] != 200:
        assert time.monotonic() < deadline
        try:
            api.client.infer("Ada Lovelace", {"entities": ["person"]}, model_id=job["id"])
            seen.append(200)
        except PioneerError as exc:
            seen.append(exc.status)
        time.sleep(0.05)
    assert 404 in seen and 409 in seen
    assert seen.index(404) < seen.index(409)


def test_the_async_reader_gets_records_and_types_errors(emu: PioneerEmulator, api: LifecycleClient) -> None:
    ready_dataset(api)
    job = api.create_training_job(body())

    async def read() -> tuple[Any, PioneerError]:
        settings = ConnectionSettings(base_url=emu.url, api_key=emu.api_key)
        async with AsyncPioneerReader(settings) as reader:
            record = await reader.get(TRAINING_JOB.bind(job_id=job["id"]))
            try:
                await reader.get(TRAINING_JOB.bind(job_id="no-such-job"))
            except PioneerError as exc:
                return record, exc
        raise AssertionError("no error for an unknown job")

    record, error = asyncio.run(read())
    assert record["id"] == job["id"] and error.status == 404 and not error.transient
    assert emu.api_key not in repr(ConnectionSettings(base_url=emu.url, api_key=emu.api_key))


def test_the_async_reader_holds_its_deadline_and_size_cap(
    emu: PioneerEmulator, api: LifecycleClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """httpx's timeout bounds each read: a trickled answer held a trigger's poll as long as the
    server liked, and any size was read into memory."""
    import airflow_provider_pioneer.lifecycle.aio as aio

    ready_dataset(api)
    job = api.create_training_job(body())
    route = TRAINING_JOB.bind(job_id=job["id"])
    settings = ConnectionSettings(base_url=emu.url, api_key=emu.api_key, timeout=5, deadline=2)

    async def get() -> Any:
        async with AsyncPioneerReader(settings) as reader:
            return await reader.get(route)

    emu.inject(fault="trickle", path=route.path, trickle_bytes=1, trickle_interval=0.5, times=1)
    started = time.monotonic()
    with pytest.raises(PioneerError, match="2 s deadline") as info:
        asyncio.run(get())
    assert time.monotonic() - started < 2 + 5 and info.value.transient  # the trigger polls again
    monkeypatch.setattr(aio, "MAX_BODY_BYTES", 64)
    with pytest.raises(PioneerError, match="refused") as info:
        asyncio.run(get())
    monkeypatch.setattr(aio, "MAX_BODY_BYTES", 1 << 20)
    assert asyncio.run(get())["id"] == job["id"]


def test_the_async_reader_judges_answers_as_the_sync_client_does(
    emu: PioneerEmulator, api: LifecycleClient
) -> None:
    """One core decodes both transports' answers: the async reader took an empty 2xx (a stop's
    204) for a body that is not JSON, and said less about a redirect than the sync client."""
    stop, record = STOP_TRAINING_JOB.bind(job_id="j-1"), TRAINING_JOB.bind(job_id="j-1")
    emu.inject(status=204, body="", content_type="text/plain", path=stop.path, times=2)
    emu.inject(
        fault="redirect", headers={"Location": "https://elsewhere.example/x"}, path=record.path, times=2
    )

    async def read() -> tuple[Any, str]:
        async with AsyncPioneerReader(ConnectionSettings(base_url=emu.url, api_key=emu.api_key)) as reader:
            stopped = await reader.post(stop)
            try:
                await reader.get(record)
            except PioneerError as exc:
                return stopped, exc.message
        raise AssertionError("a redirect was followed")

    stopped, redirected = asyncio.run(read())
    assert stopped == {} == api.stop_training_job("j-1")
    with pytest.raises(PioneerError) as sync_error:
        api.get_training_job("j-1")
    assert redirected == sync_error.value.message
    assert "elsewhere.example" in redirected and "Set the connection host" in redirected


class _TI:
    def xcom_push(self, key: str, value: Any) -> None:
        pass


def _feedback_file(tmp_path: Any, rows: list[Any]) -> str:
    path = tmp_path / "feedback.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.mark.parametrize("shape", ["verdict", "correction"])
def test_feedback_is_posted_for_stored_inferences_in_either_documented_body(
    emu: PioneerEmulator, api: LifecycleClient, tmp_path: Any, monkeypatch: pytest.MonkeyPatch, shape: str
) -> None:
    from airflow_provider_pioneer.operators.feedback import PioneerInferenceFeedbackOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_PIONEER_DEFAULT",
        json.dumps({"conn_type": "pioneer", "host": emu.url, "password": emu.api_key}),
    )
    emu.set_lifecycle(feedback_shape=shape)
    doc = api.client.infer("Ada Lovelace", {"entities": ["person"]}, model_id="fastino/gliner2-base-v1")
    corrected = {"entities": {"person": [{"text": "Ada Lovelace"}]}}
    path = _feedback_file(
        tmp_path,
        [
            {
                "inference_id": doc["inference_id"],
                "verdict": "incorrect",
                "corrected_output": corrected,
                "notes": "x",
            },
            {"inference_id": "00000000-0000-0000-0000-000000000000", "verdict": "correct"},
        ],
    )
    op = PioneerInferenceFeedbackOperator(task_id="feedback", input_path=path, body_shape=shape)
    result = op.execute({"ti": _TI()})  # type: ignore[arg-type]
    assert result["sent"] == 1 and result["not_found_ids"] == ["00000000-0000-0000-0000-000000000000"]
    assert emu.state is not None
    assert emu.state.lifecycle.feedback[doc["inference_id"]]["human_corrected_output"] == corrected


def test_bad_feedback_rows_are_named_and_nothing_is_sent(
    emu: PioneerEmulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_pioneer._compat import AirflowFailException
    from airflow_provider_pioneer.operators.feedback import PioneerInferenceFeedbackOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_PIONEER_DEFAULT",
        json.dumps({"conn_type": "pioneer", "host": emu.url, "password": emu.api_key}),
    )
    path = _feedback_file(
        tmp_path,
        [{"inference_id": "a", "verdict": "incorrect"}, "{oops", {"inference_id": "b", "verdict": "correct"},
         "[" * 100_000 + "]" * 100_000],
    )  # fmt: skip
    op = PioneerInferenceFeedbackOperator(task_id="feedback", input_path=path)
    with pytest.raises(AirflowFailException) as raised:
        op.execute({"ti": _TI()})  # type: ignore[arg-type]
    assert "line 1: an 'incorrect' verdict needs 'corrected_output'" in str(raised.value)
    assert "line 2: not valid JSON" in str(raised.value)
    assert "line 4: not valid JSON" in str(raised.value)  # nested past the recursion limit
    assert emu.counters()["requests"] == {}


def test_a_trigger_event_carries_the_state_and_results_never_the_jobs_configuration(
    emu: PioneerEmulator, api: LifecycleClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events are stored in the metadata DB and logged by the triggerer: no passed-through secret in them."""
    from airflow_provider_pioneer.operators._lifecycle_common import run_trigger_here
    from airflow_provider_pioneer.triggers.lifecycle import PioneerTrainingJobTrigger

    monkeypatch.setenv(
        "AIRFLOW_CONN_PIONEER_DEFAULT",
        json.dumps({"conn_type": "pioneer", "host": emu.url, "password": emu.api_key}),
    )
    ready_dataset(api)
    secret = "wandb-secret-5f3a9c1e7b"
    job = api.create_training_job({**body(), "wandb_api_key": secret})
    assert api.get_training_job(job["id"])["config"]["wandb_api_key"] == secret  # the API echoes it
    event = run_trigger_here(PioneerTrainingJobTrigger(job["id"], poll_interval=0.05))
    assert event["event"] == "succeeded" and event["record"]["metrics"]["f1"] == 0.86
    assert secret not in json.dumps(event) and emu.api_key not in json.dumps(event)
