"""A verdict about a model names the model that was asked for, even when the server's body does not
repeat it (issue 18, item 5): inference (client and hook) and the lifecycle calls that name a model
in their body (evaluation, training), over real HTTP to the emulator."""

from __future__ import annotations

import json

import pytest

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.lifecycle.api import LifecycleClient
from airflow_provider_pioneer.testing import PioneerEmulator

SCHEMA = {"entities": ["organization"]}
COLD = "job_cold123"


def client_of(emu: PioneerEmulator) -> PioneerClient:
    return PioneerClient(emu.url, emu.api_key, max_retries=0)


@pytest.mark.parametrize(
    ("status", "error"),
    [(409, ex.PioneerModelNotServableError), (404, ex.PioneerNotFoundError)],
)
def test_an_inference_verdict_names_the_model_asked_for(
    pioneer_emulator: PioneerEmulator, status: int, error: type[ex.PioneerError]
) -> None:
    pioneer_emulator.inject(status=status, body={"detail": "Model not servable"}, times=1)
    client = client_of(pioneer_emulator)
    try:
        with pytest.raises(error) as info:
            client.infer(["Apple."], schema=SCHEMA, model_id=COLD)
    finally:
        client.close()
    assert f"HTTP {status} for model_id '{COLD}': Model not servable" in info.value.message


def test_the_hook_names_the_model_and_a_body_that_names_it_is_not_repeated(
    pioneer_emulator: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = {"conn_type": "pioneer", "host": pioneer_emulator.url, "password": pioneer_emulator.api_key}
    monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(conn))
    pioneer_emulator.inject(status=409, body={"error": "conflict", "message": "not servable yet"}, times=1)
    with pytest.raises(ex.PioneerModelNotServableError) as info:
        PioneerHook().infer("Apple.", schema=SCHEMA, model_id=COLD)
    assert COLD in info.value.message and "supports_inference" in info.value.message
    # The emulator's own 409 names the model in its detail: said once, not twice.
    with pytest.raises(ex.PioneerModelNotServableError) as own:
        PioneerHook().infer("Apple.", schema=SCHEMA, model_id="job_unservable_7")
    assert own.value.message.count("job_unservable_7") == 1


@pytest.mark.parametrize("path", ["/felix/evaluations", "/felix/training-jobs"])
def test_a_lifecycle_409_names_the_base_model(pioneer_emulator: PioneerEmulator, path: str) -> None:
    pioneer_emulator.inject(status=409, path=path, body={"detail": "Conflict"}, times=1)
    client = client_of(pioneer_emulator)
    api = LifecycleClient(client)
    try:
        with pytest.raises(ex.PioneerError) as info:
            if path.endswith("evaluations"):
                api.create_evaluation(COLD, "ds")
            else:
                api.create_training_job({"base_model": COLD, "datasets": [{"name": "ds"}], "model_name": "m"})
    finally:
        client.close()
    assert info.value.status == 409
    assert f"HTTP 409 for base_model '{COLD}'" in info.value.message
