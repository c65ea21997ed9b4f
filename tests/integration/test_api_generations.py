"""Both API generations' answers (June 2026 and August 2026), over real HTTP: typed error, retry policy,
message with what to do (issue 10 item 1)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator
from airflow_provider_pioneer.testing import PioneerEmulator

MODEL = "fastino/gliner2-base-v1"
SCHEMA = {"entities": ["organization"]}
CREDITS_URL = "https://agent.pioneer.ai/credits"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Rereads:
    """A refresh_key callback that counts how often the key store is read again."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return None


def make_client(emu: PioneerEmulator, **kw: Any) -> PioneerClient:
    kw.setdefault("sleep", Sleeps())
    return PioneerClient(emu.url, emu.api_key, **kw)


def sent(emu: PioneerEmulator, what: str = "POST /inference") -> int:
    return int(emu.counters()["requests"].get(what, 0))


@pytest.mark.parametrize(
    ("status", "body", "headers", "cls", "says"),
    [
        # August 2026: money answers with a billing code and where to fix it.
        (402, {"code": "out_of_credits", "message": "No credits left.", "resolution_url": CREDITS_URL},
         None, ex.PioneerPaymentRequiredError, "Top up"),
        (402, {"code": "direct_model_requires_credits", "message": "Buy credits.", "resolution_url": CREDITS_URL},
         None, ex.PioneerPaymentRequiredError, "Top up"),
        (403, {"code": "credit_ceiling_reached", "message": "Ceiling.", "resolution_url": CREDITS_URL},
         None, ex.PioneerCreditCeilingError, "overage ceiling"),
        (403, {"code": "card_required", "message": "Add a card.", "resolution_url": CREDITS_URL},
         None, ex.PioneerCreditCeilingError, "add a card"),
        # June 2026: a plain 402 and the daily spend cap on 429.
        (402, {"detail": "Insufficient credits"}, None, ex.PioneerPaymentRequiredError, "Top up"),
        (429, {"detail": "cap"}, {"X-RateLimit-Reason": "daily_spend_cap_exceeded", "Retry-After": "3600"},
         ex.PioneerSpendCapError, "00:00 UTC"),
        # A 403 without a billing code is still about the key.
        (403, {"detail": "Forbidden"}, None, ex.PioneerAuthError, "API key"),
        (409, {"detail": "Model is not servable yet"}, None, ex.PioneerModelNotServableError, "supports_inference"),
    ],
)  # fmt: skip
def test_verdicts_are_typed_sent_once_and_say_what_to_do(
    pioneer_emulator: PioneerEmulator,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None,
    cls: type[ex.PioneerError],
    says: str,
) -> None:
    pioneer_emulator.inject(status=status, body=body, headers=headers)
    rereads = Rereads()
    client = make_client(pioneer_emulator, max_retries=5, refresh_key=rereads)
    with pytest.raises(ex.PioneerError) as info:
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    err = info.value
    assert type(err) is cls
    assert not err.retryable and not err.transient
    assert sent(pioneer_emulator) == 1 and client.stats.snapshot()["retries"] == 0
    assert says in err.message
    if body.get("resolution_url"):
        assert err.resolution_url == CREDITS_URL and CREDITS_URL in err.message
        assert err.code == body["code"]
    # Only a 401/403 about the key is worth re-reading the key for.
    assert rereads.calls == (1 if cls is ex.PioneerAuthError else 0)


def test_a_429_with_scope_and_code_is_retried_and_keeps_them(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(
        status=429,
        body={"detail": "Too many requests", "code": "rate_limited", "scope": "request-rate"},
        headers={"Retry-After": "0", "X-RateLimit-Scope": "request-rate", "X-RateLimit-Code": "rate_limited"},
    )
    client = make_client(pioneer_emulator, max_retries=2)
    with pytest.raises(ex.PioneerRateLimitError) as info:
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert (info.value.scope, info.value.code) == ("request-rate", "rate_limited")
    assert info.value.transient and sent(pioneer_emulator) == 3


@pytest.mark.parametrize("status", [503, 529])
def test_overloaded_and_unavailable_are_retried_to_success(
    pioneer_emulator: PioneerEmulator, status: int
) -> None:
    pioneer_emulator.inject(status=status, times=2)
    client = make_client(pioneer_emulator, max_retries=3)
    doc = client.infer(["Apple makes phones."], schema=SCHEMA, model_id=MODEL)
    assert len(doc["result"]) == 1 and sent(pioneer_emulator) == 3


def test_a_warming_model_is_waited_out_without_spending_retries(pioneer_emulator: PioneerEmulator) -> None:
    # Ten 425s with max_retries=1: the warm-up is neither an outage nor a failure.
    pioneer_emulator.inject(status=425, times=10, headers={"Retry-After": "0"})
    client = make_client(pioneer_emulator, max_retries=1, warmup_timeout=60)
    doc = client.infer(["Apple makes phones."], schema=SCHEMA, model_id=MODEL)
    assert len(doc["result"]) == 1 and sent(pioneer_emulator) == 11


def test_retry_after_of_a_warming_model_holds_the_next_attempt(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=425, times=1, headers={"Retry-After": "1"})
    client = PioneerClient(pioneer_emulator.url, pioneer_emulator.api_key, max_retries=0)
    import time

    started = time.monotonic()
    client.infer(["Apple makes phones."], schema=SCHEMA, model_id=MODEL)
    assert time.monotonic() - started >= 1.0


def test_a_model_that_stays_cold_fails_after_the_warmup_budget(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=425, headers={"Retry-After": "0"})
    client = PioneerClient(pioneer_emulator.url, pioneer_emulator.api_key, max_retries=0, warmup_timeout=1.5)
    with pytest.raises(ex.PioneerModelWarmingError) as info:
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert info.value.transient and "warming up" in info.value.message
    assert sent(pioneer_emulator) > 1  # it did wait and try again


# -- at operator level: verdicts fail without Airflow retries, warm-ups are waited out ------------


@pytest.fixture
def emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[PioneerEmulator]:
    with PioneerEmulator(latency_ms=1, rate_limit_per_minute=None) as e:
        conn = {"conn_type": "pioneer", "host": e.url, "password": e.api_key, "extra": {"key_variable": "x"}}
        monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(conn))
        yield e


class FakeTI:
    def __init__(self) -> None:
        self.xcoms: dict[str, Any] = {}

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


def run(**kwargs: Any) -> Any:
    params: dict[str, Any] = {"task_id": "infer", "model_id": MODEL, "entities": ["organization"]}
    params.update(kwargs)
    return PioneerInferenceOperator(**params).execute({"ti": FakeTI()})  # type: ignore[arg-type]


def test_a_billing_403_stops_the_run_without_retries_and_points_at_billing(emu: PioneerEmulator) -> None:
    emu.inject(
        status=403,
        body={"code": "credit_ceiling_reached", "message": "Monthly ceiling.", "resolution_url": CREDITS_URL},
    )
    with pytest.raises(AirflowFailException) as info:  # AirflowFailException: no Airflow retry
        run(texts=["Apple makes phones."] * 10, batch_size=2, max_concurrency=2)
    message = str(info.value)
    assert "ceiling" in message and CREDITS_URL in message
    assert "key_variable" not in message and "Check the connection's API key" not in message
    assert sent(emu) <= 2  # the in-flight requests at most; nothing after the verdict


def test_a_409_names_the_model_and_what_to_check(emu: PioneerEmulator) -> None:
    emu.inject(status=409, body={"detail": "Model not servable"})
    with pytest.raises(AirflowFailException) as info:
        run(texts=["Apple makes phones."], model_id="job_cold123")
    assert "job_cold123" in str(info.value) and "supports_inference" in str(info.value)


def test_a_warming_model_does_not_fail_the_task(emu: PioneerEmulator) -> None:
    emu.inject(status=425, times=3, headers={"Retry-After": "0"})
    records = run(texts=["Apple makes phones.", "Google too."], batch_size=1, max_concurrency=1)
    assert [r.get("error") for r in records] == [None, None]


def test_a_model_still_cold_after_the_budget_is_left_to_airflows_retry(
    emu: PioneerEmulator, monkeypatch
) -> None:
    conn = {"conn_type": "pioneer", "host": emu.url, "password": emu.api_key, "extra": {"warmup_timeout": 1}}
    monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(conn))
    emu.inject(status=425, headers={"Retry-After": "0"})
    with pytest.raises(AirflowException) as info:
        run(texts=["Apple makes phones."])
    assert not isinstance(info.value, AirflowFailException)  # Airflow's retry may find it warm
    assert "warming up" in str(info.value)


# -- the emulator's own behaviour in each generation (no injected bodies) -------------------------


@pytest.mark.parametrize("profile", ["current", "legacy"])
def test_out_of_credits_in_each_generation(profile: str) -> None:
    with PioneerEmulator(api_profile=profile, credits=0) as emu:
        client = make_client(emu, max_retries=3)
        with pytest.raises(ex.PioneerPaymentRequiredError) as info:
            client.infer("Apple makes phones.", schema=SCHEMA, model_id=MODEL)
        assert sent(emu) == 1
        if profile == "current":
            assert info.value.code == "out_of_credits" and CREDITS_URL in info.value.message
        else:
            assert info.value.code is None and info.value.resolution_url is None


def test_the_credit_ceiling_is_money_not_the_key() -> None:
    with PioneerEmulator(api_profile="current", credit_ceiling_tokens=0) as emu:
        rereads = Rereads()
        client = make_client(emu, refresh_key=rereads)
        with pytest.raises(ex.PioneerCreditCeilingError) as info:
            client.infer("Apple makes phones.", schema=SCHEMA, model_id=MODEL)
        assert info.value.status == 403 and rereads.calls == 0 and sent(emu) == 1


def test_the_legacy_spend_cap_stops_at_once() -> None:
    with PioneerEmulator(api_profile="legacy", spend_cap_tokens=0) as emu:
        client = make_client(emu, max_retries=3)
        with pytest.raises(ex.PioneerSpendCapError):
            client.infer("Apple makes phones.", schema=SCHEMA, model_id=MODEL)
        assert sent(emu) == 1


def test_a_real_warm_up_is_waited_out_and_an_unservable_model_is_a_verdict() -> None:
    with PioneerEmulator(
        api_profile="current", warmup_seconds=1.0, unservable_models=["job_unservable1"]
    ) as emu:
        client = PioneerClient(emu.url, emu.api_key, max_retries=0)
        doc = client.infer(["Apple makes phones."], schema=SCHEMA, model_id=MODEL)
        assert len(doc["result"]) == 1
        assert emu.counters()["statuses"].get("425", 0) >= 1
        with pytest.raises(ex.PioneerModelNotServableError):
            client.infer(["Apple makes phones."], schema=SCHEMA, model_id="job_unservable1")


@pytest.mark.parametrize("profile", ["current", "legacy"])
def test_the_rate_limiters_429_is_retried_in_each_generation(profile: str) -> None:
    with PioneerEmulator(api_profile=profile, rate_limit_per_minute=60, rate_limit_burst=1) as emu:
        client = PioneerClient(emu.url, emu.api_key, max_retries=3, max_retry_after=1.5)
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)  # over the limit: waits, then succeeds
        assert emu.counters()["statuses"].get("429", 0) >= 1
        assert client.stats.snapshot()["rate_limited"] >= 1
