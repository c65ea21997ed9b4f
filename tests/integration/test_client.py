"""PioneerClient over real HTTP against the emulator: mapping, retry policy, redirects, URL policy."""

from __future__ import annotations

import email.utils
import random
import threading
import time
from typing import Any

import pytest

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.testing import PioneerEmulator

MODEL = "fastino/gliner2-base-v1"
SCHEMA = {"entities": ["organization", "product"]}


class CeilingRng(random.Random):
    """Full jitter draws uniform(0, ceiling); this one always draws the ceiling, to see the schedule."""

    def uniform(self, a: float, b: float) -> float:
        return b


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_client(emu: PioneerEmulator, **kw: Any) -> PioneerClient:
    kw.setdefault("sleep", Sleeps())
    return PioneerClient(emu.url, kw.pop("api_key", emu.api_key), **kw)


def sent(emu: PioneerEmulator, what: str = "POST /inference") -> int:
    return int(emu.counters()["requests"].get(what, 0))


def test_infer_returns_the_emulators_per_text_answers(pioneer_emulator: PioneerEmulator) -> None:
    client = make_client(pioneer_emulator)
    texts = ["Apple announced the MacBook Pro.", "Google opened an office in Paris."]
    doc = client.infer(texts, schema=SCHEMA, model_id=MODEL, threshold=0.3)
    assert doc["type"] == "encoder" and doc["token_usage"] > 0
    assert doc["result"] == [
        pioneer_emulator.extract(t, ["organization", "product"], threshold=0.3) for t in texts
    ]
    single = client.infer(texts[0], schema=SCHEMA, model_id=MODEL)
    assert single["result"]["entities"]["organization"][0]["text"] == "Apple"


def test_key_management_and_models(pioneer_emulator: PioneerEmulator) -> None:
    client = make_client(pioneer_emulator)
    created = client.create_api_key("nightly-1")
    assert created["key"].startswith("pio_sk_") and created["name"] == "nightly-1"
    names = [k["name"] for k in client.list_api_keys()]
    assert "nightly-1" in names and all("key" not in k for k in client.list_api_keys())
    client.delete_api_key("nightly-1")
    assert "nightly-1" not in [k["name"] for k in client.list_api_keys()]
    with pytest.raises(ex.PioneerNotFoundError):
        client.delete_api_key("nightly-1")
    models = [m["id"] for m in client.list_base_models()]
    assert MODEL in models


@pytest.mark.parametrize(
    ("status", "headers", "cls"),
    [
        (401, None, ex.PioneerAuthError),
        (402, None, ex.PioneerPaymentRequiredError),
        (404, None, ex.PioneerNotFoundError),
        (422, None, ex.PioneerValidationError),
        (
            429,
            {"X-RateLimit-Reason": "daily_spend_cap_exceeded", "Retry-After": "3600"},
            ex.PioneerSpendCapError,
        ),
    ],
)
def test_never_retried_statuses_are_sent_exactly_once(
    pioneer_emulator: PioneerEmulator, status: int, headers: dict[str, str] | None, cls: type[Exception]
) -> None:
    pioneer_emulator.inject(status=status, headers=headers)
    client = make_client(pioneer_emulator, max_retries=5)
    with pytest.raises(cls) as info:
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert type(info.value) is cls
    assert sent(pioneer_emulator) == 1
    assert client.stats.snapshot()["retries"] == 0


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_retried_statuses_use_the_whole_budget_with_growing_waits(
    pioneer_emulator: PioneerEmulator, status: int
) -> None:
    pioneer_emulator.inject(status=status)
    sleeps = Sleeps()
    client = make_client(pioneer_emulator, max_retries=4, rng=CeilingRng(), sleep=sleeps)
    with pytest.raises(ex.PioneerServerError if status != 429 else ex.PioneerRateLimitError) as info:
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert info.value.status == status
    assert sent(pioneer_emulator) == 5  # the first attempt and 4 retries
    assert sleeps.waits == [1.0, 2.0, 4.0, 8.0]
    assert client.stats.snapshot()["retries"] == 4


def test_full_jitter_stays_under_a_ceiling_that_grows_to_the_cap(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=503)
    sleeps = Sleeps()
    client = make_client(pioneer_emulator, max_retries=7, rng=random.Random(7), sleep=sleeps)
    with pytest.raises(ex.PioneerServerError):
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    ceilings = [client.backoff_ceiling(n) for n in range(1, 8)]
    assert ceilings == [1, 2, 4, 8, 16, 20, 20]
    assert len(sleeps.waits) == 7
    assert all(0 <= w <= c for w, c in zip(sleeps.waits, ceilings, strict=True))
    assert len(set(sleeps.waits)) == 7  # jittered, not a fixed schedule


def test_a_transient_failure_is_retried_to_success(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=502, times=2, content_type="text/html")
    pioneer_emulator.inject(fault="drop", times=1, after=0)
    client = make_client(pioneer_emulator, max_retries=5)
    doc = client.infer(["Apple announced the MacBook Pro."], schema=SCHEMA, model_id=MODEL)
    assert len(doc["result"]) == 1
    assert client.stats.snapshot()["retries"] == 3


def test_retry_after_makes_the_next_attempt_wait(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=429, times=1, headers={"Retry-After": "2"})
    client = make_client(pioneer_emulator, sleep=time.sleep)
    start = time.monotonic()
    client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert time.monotonic() - start >= 2.0
    assert sent(pioneer_emulator) == 2


def test_the_retry_log_says_how_long_the_shared_retry_after_holds(
    pioneer_emulator: PioneerEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 17: the log said "retry 1 of 5 in 0.8 s", then the gate was silent for the rest of
    the Retry-After; it now gives the whole wait and why."""
    pioneer_emulator.inject(status=429, times=1, headers={"Retry-After": "3"})
    client = make_client(pioneer_emulator, sleep=time.sleep)
    with caplog.at_level("WARNING", logger="airflow_provider_pioneer.client"):
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    line = next(r.getMessage() for r in caplog.records if "retry 1 of" in r.getMessage())
    waited = float(line.split(" in ")[1].split(" s")[0])
    assert waited >= 2.9, line
    assert "waits for the server's Retry-After" in line


def test_retry_after_as_http_date(pioneer_emulator: PioneerEmulator) -> None:
    when = email.utils.formatdate(time.time() + 3, usegmt=True)  # whole seconds: at least 2 s away
    pioneer_emulator.inject(status=503, times=1, headers={"Retry-After": when})
    client = make_client(pioneer_emulator, sleep=time.sleep)
    start = time.monotonic()
    client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert time.monotonic() - start >= 1.5


def test_retry_after_is_shared_by_every_thread(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=429, times=1, headers={"Retry-After": "2"})
    client = make_client(pioneer_emulator, max_retries=0, sleep=time.sleep)
    with pytest.raises(ex.PioneerRateLimitError):
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    start = time.monotonic()
    other: dict[str, float] = {}

    def another_worker() -> None:
        client.list_api_keys()  # a different endpoint, a different thread: still held by the gate
        other["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=another_worker)
    t.start()
    t.join(30)
    assert other["elapsed"] >= 1.8


def test_retry_after_is_capped(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=429, times=1, headers={"Retry-After": "3600"})
    client = make_client(pioneer_emulator, sleep=time.sleep, max_retry_after=1.0)
    start = time.monotonic()
    client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert 1.0 <= time.monotonic() - start < 60


def test_read_timeout_on_inference_is_retried_at_most_once(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.set_latency(1500)
    client = make_client(pioneer_emulator, timeout=0.3, max_retries=5)
    with pytest.raises(ex.PioneerConnectionError, match="timed out"):
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    time.sleep(1.6)  # let the emulator finish the abandoned requests before counting
    assert sent(pioneer_emulator) == 2
    assert client.stats.snapshot()["retries"] == 1


def test_deadline_stops_retrying(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=503)
    client = make_client(pioneer_emulator, max_retries=50, deadline=1.0, sleep=time.sleep, backoff_base=0.2)
    start = time.monotonic()
    with pytest.raises(ex.PioneerServerError):
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert time.monotonic() - start < 10
    assert 1 < sent(pioneer_emulator) < 50


def test_redirect_is_not_followed_and_other_host_gets_no_key(pioneer_emulator: PioneerEmulator) -> None:
    with PioneerEmulator() as elsewhere:
        pioneer_emulator.inject(fault="redirect", headers={"Location": f"{elsewhere.url}/inference"})
        client = make_client(pioneer_emulator)
        with pytest.raises(ex.PioneerResponseError, match="redirect") as info:
            client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
        assert info.value.status == 307
        assert sum(elsewhere.counters()["requests"].values()) == 0


def test_401_rereads_the_key_once(pioneer_emulator: PioneerEmulator) -> None:
    old = pioneer_emulator.create_key("old")
    new = pioneer_emulator.create_key("new")
    reads: list[str] = []

    def refresh() -> str:
        reads.append("read")
        return new

    client = make_client(pioneer_emulator, api_key=old, refresh_key=refresh)
    pioneer_emulator.reset_counters()
    client.list_api_keys()
    client.delete_api_key("old")  # revoke the key the client is using, as a rotation would
    assert reads == []
    client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert reads == ["read"]
    assert pioneer_emulator.counters()["statuses"].get("401") == 1
    client.infer("Apple.", schema=SCHEMA, model_id=MODEL)  # the new key sticks
    assert reads == ["read"]


def test_401_with_an_unchanged_key_fails_after_one_reread(pioneer_emulator: PioneerEmulator) -> None:
    reads: list[int] = []
    client = make_client(
        pioneer_emulator, api_key="pio_sk_bogus", refresh_key=lambda: reads.append(1) or "pio_sk_bogus"
    )
    with pytest.raises(ex.PioneerAuthError, match="API key"):
        client.list_api_keys()
    assert reads == [1]
    assert sent(pioneer_emulator, "GET /list-api-keys") == 1


@pytest.mark.parametrize(
    "url", ["http://api.example.com", "http://10.0.0.5:8080", "ftp://api.pioneer.ai", "https://user:pw@x.io"]
)
def test_unsafe_base_urls_are_refused_before_any_request(url: str) -> None:
    with pytest.raises(ex.PioneerConfigurationError) as info:
        PioneerClient(url, "pio_sk_x")
    assert "pio_sk_x" not in str(info.value)


def test_plain_http_message_says_what_to_do() -> None:
    with pytest.raises(
        ex.PioneerConfigurationError, match=r"use https://, or set the connection extra allow_insecure_http"
    ):
        PioneerClient("http://api.example.com", "pio_sk_x")
    assert PioneerClient("http://api.example.com", "pio_sk_x", allow_insecure_http=True).base_url
    for ok in ("http://127.0.0.1:1", "http://localhost:1", "http://[::1]:1", "https://api.pioneer.ai/"):
        assert PioneerClient(ok, "pio_sk_x").base_url == ok.rstrip("/")


def test_connection_refused_is_a_typed_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = PioneerClient(f"http://127.0.0.1:{port}", "pio_sk_x", max_retries=2, sleep=Sleeps())
    with pytest.raises(ex.PioneerConnectionError, match="could not reach") as info:
        client.list_api_keys()
    assert "3 attempts" in str(info.value)


def test_a_2xx_that_is_not_the_promised_document(pioneer_emulator: PioneerEmulator) -> None:
    pioneer_emulator.inject(status=200, body="<html>login</html>", content_type="text/html", times=1)
    client = make_client(pioneer_emulator)
    with pytest.raises(ex.PioneerResponseError, match="not JSON"):
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
