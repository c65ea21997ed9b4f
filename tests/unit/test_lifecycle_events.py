"""The lifecycle operators' pure logic: the trigger event checked on resume, one verdict mapping
for training and evaluation, and ``[operators] default_deferrable``."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.operators.evaluation import PioneerEvaluationOperator
from airflow_provider_pioneer.operators.training import PioneerTrainingJobOperator, PioneerTrainingJobSensor


def _training(**kwargs: Any) -> PioneerTrainingJobOperator:
    return PioneerTrainingJobOperator(
        task_id="train", base_model="b", datasets=["ds"], model_name="m", **kwargs
    )


def _evaluation(**kwargs: Any) -> PioneerEvaluationOperator:
    return PioneerEvaluationOperator(task_id="evaluate", base_model="b", dataset_name="ds", **kwargs)


def _sensor(**kwargs: Any) -> PioneerTrainingJobSensor:
    return PioneerTrainingJobSensor(task_id="wait", job_id="j", **kwargs)


WAITERS = [_training, _evaluation, _sensor]


@pytest.mark.parametrize("make", WAITERS)
@pytest.mark.parametrize(
    ("event", "says"),
    [
        (None, "the trigger returned no event (NoneType)"),
        ("succeeded", "the trigger returned no event (str)"),
        ({"event": "succeeded"}, "'id' is missing"),
        ({"event": "finished", "id": "j"}, "'event' is 'finished', not one of"),
        ({"event": "error", "id": "j", "status": 404}, "'status' has the wrong type (int)"),
        ({"event": "succeeded", "id": "j", "record": ["x"]}, "'record' has the wrong type (list)"),
        ({"event": "timeout", "id": "j", "logs_seen": True}, "'logs_seen' has the wrong type (bool)"),
    ],
)
def test_a_missing_or_malformed_event_fails_the_resume_with_a_short_message(
    make: Any, event: Any, says: str
) -> None:
    with pytest.raises(AirflowException) as raised:
        make().execute_complete({}, event)
    assert type(raised.value) is AirflowException  # retryable: a retry waits again
    assert says in str(raised.value) and "clear the task to wait again" in str(raised.value)


@pytest.mark.parametrize("make", WAITERS)
@pytest.mark.parametrize(("retryable", "raised"), [(False, AirflowFailException), (True, AirflowException)])
def test_training_and_evaluation_map_an_error_event_to_the_same_verdict(
    make: Any, retryable: bool, raised: type[Exception]
) -> None:
    event = {"event": "error", "id": "j", "status": None, "http_status": 422, "retryable": retryable,
             "message": "Pioneer GET /felix/x answered HTTP 422: bad id."}  # fmt: skip
    with pytest.raises(AirflowException) as caught:
        make().execute_complete({}, event)
    assert type(caught.value) is raised and "HTTP 422: bad id" in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 409, 413, 422])
def test_every_client_error_is_a_verdict_and_outages_are_not(status: int) -> None:
    import requests

    from airflow_provider_pioneer.exceptions import fails_without_retries
    from airflow_provider_pioneer.http_errors import error_for_response

    answer = requests.Response()
    answer.status_code, answer._content = status, b'{"detail": "no"}'
    assert fails_without_retries(error_for_response(answer, "GET /x", lambda text: text))
    answer.status_code = 503
    assert not fails_without_retries(error_for_response(answer, "GET /x", lambda text: text))


@pytest.mark.parametrize("make", WAITERS)
def test_deferrable_follows_operators_default_deferrable(make: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", raising=False)
    assert make().deferrable is False  # unset: wait in the worker, a deployment may have no triggerer
    monkeypatch.setenv("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE", "true")
    assert make().deferrable is True
    assert make(deferrable=False).deferrable is False  # an explicit choice wins
