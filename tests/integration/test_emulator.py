"""The Pioneer emulator over real HTTP (``requests`` to 127.0.0.1), as clients will see it."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_pioneer.testing import BASE_MODELS, EmulatorControl, PioneerEmulator, pytest_plugin

# The plugin's own fixtures, bound here too so they work without the pytest11 entry point (no install).
pioneer_emulator = pytest_plugin.pioneer_emulator
pioneer_emulator_legacy = pytest_plugin.pioneer_emulator_legacy

REPO = Path(__file__).resolve().parents[2]
MODEL = BASE_MODELS[0]
EXAMPLE = "Apple announced the MacBook Pro."


def infer(
    emu: PioneerEmulator,
    text: Any,
    labels: Any = ("organization", "product"),
    key: str | None = None,
    **extra: Any,
) -> requests.Response:
    schema = labels if isinstance(labels, dict | list) else {"entities": list(labels)}
    body = {"model_id": MODEL, "text": text, "schema": schema, **extra}
    return requests.post(
        f"{emu.url}/inference", headers={"X-API-Key": key or emu.api_key}, json=body, timeout=10
    )


def keys_call(
    emu: PioneerEmulator, method: str, path: str, key: str | None = None, **kw: Any
) -> requests.Response:
    return requests.request(
        method, f"{emu.url}/{path}", headers={"X-API-Key": key or emu.api_key}, timeout=10, **kw
    )


# -- basics -------------------------------------------------------------------------------------------
def test_health_needs_no_key(pioneer_emulator: PioneerEmulator) -> None:
    resp = requests.get(f"{pioneer_emulator.url}/health", timeout=5)
    assert resp.status_code == 200
    assert resp.json() == {"status": "ok"}
    assert pioneer_emulator.api_key.startswith("pio_sk_")
    assert pioneer_emulator.api_key_name == "bootstrap"


def test_import_is_light() -> None:
    code = "import sys, airflow_provider_pioneer.testing; assert 'uvicorn' not in sys.modules, 'uvicorn imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=30)


def test_the_example(pioneer_emulator: PioneerEmulator) -> None:
    resp = infer(pioneer_emulator, EXAMPLE)
    assert resp.status_code == 200
    body = resp.json()
    assert set(body) == {
        "type",
        "inference_id",
        "result",
        "model_id",
        "latency_ms",
        "token_usage",
        "model_used",
    }
    assert body["type"] == "encoder"
    assert body["model_id"] == body["model_used"] == MODEL
    assert body["token_usage"] == 5  # whitespace-separated words
    entities = body["result"]["entities"]
    assert [e["text"] for e in entities["organization"]] == ["Apple"]
    assert [e["text"] for e in entities["product"]] == ["MacBook Pro"]
    for found in entities.values():
        for e in found:
            assert EXAMPLE[e["start"] : e["end"]] == e["text"]
            assert 0.0 <= e["confidence"] <= 1.0
    assert "Deprecation" not in resp.headers


def test_bearer_auth_and_label_objects(pioneer_emulator: PioneerEmulator) -> None:
    resp = requests.post(
        f"{pioneer_emulator.url}/inference",
        headers={"Authorization": f"Bearer {pioneer_emulator.api_key}"},
        json={
            "model_id": MODEL,
            "text": EXAMPLE,
            "schema": {"entities": [{"name": "company", "description": "a business"}, "person"]},
        },
        timeout=5,
    )
    assert resp.status_code == 200
    entities = resp.json()["result"]["entities"]
    assert [e["text"] for e in entities["company"]] == ["Apple"]  # synonym of organization
    assert entities["person"] == []  # every requested label is a key


def test_flat_label_list_is_deprecated_but_works(pioneer_emulator: PioneerEmulator) -> None:
    resp = infer(pioneer_emulator, EXAMPLE, labels=["organization"])
    assert resp.status_code == 200
    assert resp.headers["Deprecation"] == "true"
    assert "Sunset" in resp.headers
    assert resp.json()["result"]["entities"]["organization"][0]["text"] == "Apple"


def test_batch_keeps_order_and_bills_words(pioneer_emulator: PioneerEmulator) -> None:
    texts = ["Tim Cook visited Paris.", EXAMPLE, "nothing here", "Google opened an office in Berlin."]
    resp = infer(pioneer_emulator, texts, labels=("organization", "person", "location", "product"))
    assert resp.status_code == 200
    body = resp.json()
    assert isinstance(body["result"], list) and len(body["result"]) == 4
    for text, result in zip(texts, body["result"], strict=True):
        assert result == pioneer_emulator.extract(text, ["organization", "person", "location", "product"])
    assert body["result"][0]["entities"]["person"][0]["text"] == "Tim Cook"
    assert body["result"][3]["entities"]["location"][0]["text"] == "Berlin"
    assert body["token_usage"] == sum(len(t.split()) for t in texts)
    c = pioneer_emulator.counters()
    assert c["inference_requests_committed"] == 1
    assert c["texts_committed"] == 4
    assert c["tokens_billed"] == body["token_usage"]
    assert c["text_counts"] == {t: 1 for t in texts}
    assert c["requests"]["POST /inference"] == 1
    assert c["statuses"]["200"] == 1


def test_threshold_filters(pioneer_emulator: PioneerEmulator) -> None:
    text = "The board of Globex Industries met Hooli Inc in Springfield near Shelbyville and Apple."
    labels = ["organization", "location", "misc"]
    everything = pioneer_emulator.extract(text, labels, threshold=0.0)["entities"]
    confidences = sorted(e["confidence"] for found in everything.values() for e in found)
    assert len(confidences) >= 4
    cut = confidences[len(confidences) // 2]
    resp = infer(pioneer_emulator, text, labels=labels, threshold=cut)
    kept = [e for found in resp.json()["result"]["entities"].values() for e in found]
    assert kept and all(e["confidence"] >= cut for e in kept)
    assert len(kept) == sum(1 for c in confidences if c >= cut) < len(confidences)
    # Deterministic: same request, same answer.
    assert (
        infer(pioneer_emulator, text, labels=labels, threshold=cut).json()["result"] == resp.json()["result"]
    )


def test_include_flags(pioneer_emulator: PioneerEmulator) -> None:
    resp = infer(pioneer_emulator, EXAMPLE, include_confidence=False, include_spans=False)
    assert resp.json()["result"]["entities"]["organization"] == [{"text": "Apple"}]
    resp = infer(pioneer_emulator, EXAMPLE, include_confidence=False)
    assert set(resp.json()["result"]["entities"]["organization"][0]) == {"text", "start", "end"}
    resp = infer(pioneer_emulator, EXAMPLE, include_spans=False)
    assert set(resp.json()["result"]["entities"]["organization"][0]) == {"text", "confidence"}


# -- errors -------------------------------------------------------------------------------------------
def test_unknown_and_missing_keys_get_401(pioneer_emulator: PioneerEmulator) -> None:
    assert infer(pioneer_emulator, EXAMPLE, key="pio_sk_nope").status_code == 401
    resp = requests.post(f"{pioneer_emulator.url}/inference", json={}, timeout=5)
    assert resp.status_code == 401
    assert resp.json() == {"detail": "Invalid or missing API key"}
    assert keys_call(pioneer_emulator, "GET", "list-api-keys", key="pio_sk_nope").status_code == 401
    assert pioneer_emulator.counters()["statuses"] == {"401": 3}


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"text": EXAMPLE, "schema": ["x"]}, ["body", "model_id"]),
        ({"model_id": MODEL, "schema": ["x"]}, ["body", "text"]),
        ({"model_id": MODEL, "text": EXAMPLE}, ["body", "schema"]),
        ({"model_id": MODEL, "text": EXAMPLE, "schema": ["x"], "threshold": 1.5}, ["body", "threshold"]),
        ({"model_id": MODEL, "text": [], "schema": ["x"]}, ["body", "text"]),
        ({"model_id": MODEL, "text": ["a"] * 1001, "schema": ["x"]}, ["body", "text"]),
        (
            {"model_id": MODEL, "text": ["fine", "also fine", "   ", "ok"], "schema": ["x"]},
            ["body", "text", 2],
        ),
        ({"model_id": MODEL, "text": ["fine", "x" * 10_001], "schema": ["x"]}, ["body", "text", 1]),
        ({"model_id": MODEL, "text": "", "schema": ["x"]}, ["body", "text"]),
        ({"model_id": MODEL, "text": ["ok", 3], "schema": ["x"]}, ["body", "text", 1]),
    ],
)
def test_validation_errors_use_fastapi_envelope(
    pioneer_emulator: PioneerEmulator, body: dict[str, Any], loc: list[Any]
) -> None:
    resp = requests.post(
        f"{pioneer_emulator.url}/inference",
        headers={"X-API-Key": pioneer_emulator.api_key},
        json=body,
        timeout=5,
    )
    assert resp.status_code == 422
    detail = resp.json()["detail"]
    assert isinstance(detail, list) and detail
    assert detail[0]["loc"] == loc
    assert isinstance(detail[0]["msg"], str) and isinstance(detail[0]["type"], str)
    assert pioneer_emulator.counters()["tokens_billed"] == 0


def test_max_text_chars_is_configurable() -> None:
    with PioneerEmulator(max_text_chars=10) as emu:
        resp = infer(emu, ["short", "this one is too long"])
        assert resp.status_code == 422
        assert resp.json()["detail"][0]["loc"] == ["body", "text", 1]


def test_models(pioneer_emulator: PioneerEmulator) -> None:
    assert infer(pioneer_emulator, EXAMPLE, model_id="fastino/nope").status_code == 404
    assert "not found" in infer(pioneer_emulator, EXAMPLE, model_id="fastino/nope").json()["detail"]
    assert infer(pioneer_emulator, EXAMPLE, model_id="job_abc123").status_code == 200
    assert infer(pioneer_emulator, EXAMPLE, model_id=str(uuid.uuid4())).status_code == 200
    for model in BASE_MODELS:
        assert infer(pioneer_emulator, EXAMPLE, model_id=model).status_code == 200

    full = keys_call(pioneer_emulator, "GET", "v1/models").json()
    assert [m["id"] for m in full["data"]] == list(BASE_MODELS)
    assert full["has_more"] is False
    assert all(m["type"] == "model" and m["display_name"] and m["created_at"] for m in full["data"])
    first = keys_call(pioneer_emulator, "GET", "v1/models", params={"limit": 1}).json()
    assert [m["id"] for m in first["data"]] == [BASE_MODELS[0]]
    assert first["has_more"] is True and first["first_id"] == first["last_id"] == BASE_MODELS[0]
    rest = keys_call(pioneer_emulator, "GET", "v1/models", params={"after_id": first["last_id"]}).json()
    assert [m["id"] for m in rest["data"]] == list(BASE_MODELS[1:])
    assert rest["has_more"] is False
    assert requests.get(f"{pioneer_emulator.url}/v1/models", timeout=5).status_code == 401


# -- keys -----------------------------------------------------------------------------------------------
def test_key_lifecycle(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    created = keys_call(emu, "POST", "create-api-key", json={"name": "nightly-1"})
    assert created.status_code in (200, 201)
    body = created.json()
    assert body["key"].startswith("pio_sk_") and body["name"] == "nightly-1" and body["id"]
    assert body["created_at"].endswith("Z") or "+00:00" in body["created_at"]
    new_key = body["key"]
    assert infer(emu, EXAMPLE, key=new_key).status_code == 200

    listed = keys_call(emu, "GET", "list-api-keys", key=new_key).json()["keys"]
    assert [k["name"] for k in listed] == ["bootstrap", "nightly-1"]
    assert all(set(k) == {"id", "name", "created_at"} for k in listed)
    assert emu.alive_key_names() == ["bootstrap", "nightly-1"]

    deleted = keys_call(emu, "DELETE", "delete-api-key", key=new_key, json={"name": "bootstrap"})
    assert deleted.status_code == 200
    assert deleted.json()["deleted"] is True and deleted.json()["name"] == "bootstrap"
    assert infer(emu, EXAMPLE).status_code == 401  # revoked bootstrap key, immediately
    assert not emu.key_is_alive(emu.api_key) and emu.key_is_alive(new_key)
    assert (
        keys_call(emu, "DELETE", "delete-api-key", key=new_key, json={"name": "bootstrap"}).status_code == 404
    )

    c = emu.counters()
    assert (c["keys_alive"], c["keys_created"], c["keys_revoked"]) == (1, 2, 1)

    # By id, and a caller may revoke the very key it calls with.
    own_id = keys_call(emu, "GET", "list-api-keys", key=new_key).json()["keys"][0]["id"]
    assert keys_call(emu, "DELETE", "delete-api-key", key=new_key, json={"key_id": own_id}).status_code == 200
    assert keys_call(emu, "GET", "list-api-keys", key=new_key).status_code == 401


def test_delete_by_name_revokes_every_key_with_that_name(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    twins = [emu.create_key("twin"), emu.create_key("twin")]
    other_account_key, _ = emu.new_account()
    foreign_twin = emu.create_key("twin", account_of_key=other_account_key)
    assert keys_call(emu, "DELETE", "delete-api-key", json={"name": "twin"}).status_code == 200
    assert not any(emu.key_is_alive(k) for k in twins)
    assert emu.key_is_alive(foreign_twin)  # other accounts are untouched
    assert emu.alive_key_names(account_of_key=other_account_key) == ["bootstrap", "twin"]


def test_key_endpoint_rate_limit() -> None:
    with PioneerEmulator(key_rate_limit_per_minute=60) as emu:
        assert keys_call(emu, "GET", "list-api-keys").status_code == 200
        resp = keys_call(emu, "GET", "list-api-keys")
        assert resp.status_code == 429 and int(resp.headers["Retry-After"]) >= 1
        assert infer(emu, EXAMPLE).status_code == 200  # /inference has its own bucket


# -- money and limits ------------------------------------------------------------------------------------
def test_out_of_credits_gets_402_everywhere(pioneer_emulator_legacy: PioneerEmulator) -> None:
    emu = pioneer_emulator_legacy
    key, _ = emu.new_account(credits=8)
    assert infer(emu, EXAMPLE, key=key).status_code == 200  # 5 tokens, 3 left
    resp = infer(emu, EXAMPLE, key=key)
    assert resp.status_code == 402 and resp.json()["detail"]
    assert emu.counters()["tokens_billed"] == 5  # nothing billed for the refused call
    emu.set_credits(0, account_of_key=key)
    assert keys_call(emu, "GET", "list-api-keys", key=key).status_code == 402
    assert keys_call(emu, "POST", "create-api-key", key=key, json={"name": "x"}).status_code == 402
    assert infer(emu, "one", key=key).status_code == 402
    assert infer(emu, EXAMPLE).status_code == 200  # other accounts are unaffected
    emu.set_credits(None, account_of_key=key)
    assert infer(emu, EXAMPLE, key=key).status_code == 200


def test_rate_limit_429_with_retry_after(pioneer_emulator_legacy: PioneerEmulator) -> None:
    emu = pioneer_emulator_legacy
    emu.set_rate_limit(60, burst=2)
    statuses = [infer(emu, "hello world") for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json() == {"detail": "Rate limit exceeded"}
    assert int(statuses[2].headers["Retry-After"]) == 1
    assert not any(h.lower().startswith("x-ratelimit") for h in statuses[2].headers)
    other, _ = emu.new_account()
    assert infer(emu, "hello", key=other).status_code == 200  # per key
    assert infer(emu, "hello", key=emu.create_key("same-account")).status_code == 200  # per key, really
    emu.set_rate_limit(None)
    assert all(infer(emu, "hello").status_code == 200 for _ in range(5))


def test_daily_spend_cap(pioneer_emulator_legacy: PioneerEmulator) -> None:
    emu = pioneer_emulator_legacy
    key, _ = emu.new_account(spend_cap_tokens=6)
    assert infer(emu, EXAMPLE, key=key).status_code == 200
    resp = infer(emu, EXAMPLE, key=key)
    assert resp.status_code == 429
    assert resp.headers["X-RateLimit-Reason"] == "daily_spend_cap_exceeded"
    assert 1 <= int(resp.headers["Retry-After"]) <= 86_400
    emu.set_spend_cap(None, account_of_key=key)
    assert infer(emu, EXAMPLE, key=key).status_code == 200


def test_latency_lets_requests_overlap(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.set_latency(150, per_text_latency_ms=10)
    started = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(lambda i: infer(emu, [f"text {i}", "two"]).status_code, range(4)))
    elapsed = time.perf_counter() - started
    assert codes == [200] * 4
    assert elapsed >= 0.17  # each waits 150 ms + 2 x 10 ms (an upper bound would be a timing assert)
    assert emu.counters()["max_concurrent_inference"] >= 2


# -- faults ---------------------------------------------------------------------------------------------
def test_status_fault_at_rate_is_reproducible_and_two_emulators_run_at_once() -> None:
    with PioneerEmulator(seed=7) as one, PioneerEmulator(seed=7) as two:
        assert one.url != two.url
        patterns = []
        for emu in (one, two):
            fault = emu.inject(status=503, rate=0.5)
            codes = [infer(emu, "hello").status_code for _ in range(20)]
            assert set(codes) == {200, 503}
            assert emu.counters()["faults_fired"] == {fault: codes.count(503)}
            assert emu.counters()["inference_requests_committed"] == codes.count(200)
            patterns.append(codes)
        assert patterns[0] == patterns[1]
        assert one.key_is_alive(one.api_key) and not one.key_is_alive(two.api_key)


def test_status_fault_times_after_headers_and_body(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.inject(status=429, times=2, after=1, headers={"Retry-After": "2"})
    responses = [infer(emu, "hello") for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 429, 429, 200]
    assert responses[1].headers["Retry-After"] == "2" and "detail" in responses[1].json()
    emu.clear_faults()

    emu.inject(status=502, times=1, content_type="text/html")
    resp = infer(emu, "hello")
    assert resp.status_code == 502 and resp.headers["content-type"].startswith("text/html")
    assert "<html>" in resp.text
    emu.inject(status=429, times=1, headers={"X-RateLimit-Reason": "daily_spend_cap_exceeded"})
    assert infer(emu, "hello").headers["X-RateLimit-Reason"] == "daily_spend_cap_exceeded"
    emu.inject(status=401, times=1, body={"error": "unauthorized", "message": "nope"})
    resp = infer(emu, "hello")
    assert resp.status_code == 401 and resp.json() == {"error": "unauthorized", "message": "nope"}
    assert infer(emu, "hello").status_code == 200
    assert emu.counters()["tokens_billed"] == 3  # faults answer before anything is billed


def test_fault_path_selection(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.inject(status=500, path="/create-api-key", times=1)
    assert infer(emu, "hello").status_code == 200
    assert keys_call(emu, "POST", "create-api-key", json={"name": "a"}).status_code == 500
    emu.inject(status=503, path=None, times=2)
    assert requests.get(f"{emu.url}/health", timeout=5).status_code == 200  # never faulted
    assert keys_call(emu, "GET", "list-api-keys").status_code == 503
    assert infer(emu, "hello").status_code == 503
    assert emu.counters()["statuses"]["503"] == 2


def test_drop_closes_the_connection_before_processing(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    fault = emu.inject(fault="drop", times=1)
    with pytest.raises(requests.ConnectionError):
        infer(emu, "dropped text")
    assert infer(emu, "next text").status_code == 200
    c = emu.counters()
    assert c["text_counts"] == {"next text": 1}
    assert c["faults_fired"] == {fault: 1}


def test_lose_response_commits_then_drops(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.inject(fault="lose_response", times=1, after=1)
    assert infer(emu, "first").status_code == 200
    with pytest.raises(requests.ConnectionError):
        infer(emu, "second")
    assert emu.counters()["text_counts"] == {"first": 1, "second": 1}  # billed although lost

    emu.inject(fault="lose_response", path="/create-api-key", times=1)
    with pytest.raises(requests.ConnectionError):
        keys_call(emu, "POST", "create-api-key", json={"name": "ghost"})
    assert "ghost" in emu.alive_key_names()
    # Only successful answers are lost: a 401 still arrives.
    emu.inject(fault="lose_response", times=1)
    assert infer(emu, "x", key="pio_sk_bad").status_code == 401
    with pytest.raises(requests.ConnectionError):
        infer(emu, "third")


def test_redirect_fault(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.inject(fault="redirect", headers={"Location": "http://127.0.0.1:9/steal"}, times=1)
    resp = requests.post(
        f"{emu.url}/inference",
        headers={"X-API-Key": emu.api_key},
        json={"model_id": MODEL, "text": "x", "schema": ["a"]},
        allow_redirects=False,
        timeout=5,
    )
    assert resp.status_code == 307
    assert resp.headers["Location"] == "http://127.0.0.1:9/steal"
    with pytest.raises(ValueError):
        emu.inject(fault="redirect")
    with pytest.raises(ValueError):
        emu.inject(fault="explode")


# -- ways to run it ---------------------------------------------------------------------------------------
def test_subprocess_mode_through_emulator_control() -> None:
    with PioneerEmulator(subprocess=True, credits=100) as emu:
        assert emu.state is None
        control = EmulatorControl(emu.url)
        assert control.api_key == emu.api_key
        resp = infer(emu, EXAMPLE)
        assert resp.json()["result"]["entities"]["product"][0]["text"] == "MacBook Pro"
        control.inject(status=500, times=1)
        assert infer(emu, EXAMPLE).status_code == 500
        key, name = control.new_account(credits=1)
        assert name == "bootstrap" and infer(emu, EXAMPLE, key=key).status_code == 402
        assert control.counters()["tokens_billed"] == 5
        control.reset_counters()
        assert control.counters()["tokens_billed"] == 0
        control.close()
        pid_port = emu.port
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{pid_port}/health", timeout=2)


def test_stop_frees_the_port() -> None:
    emu = PioneerEmulator().start()
    port = emu.port
    emu.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    with PioneerEmulator(port=port) as again:
        assert requests.get(f"{again.url}/health", timeout=2).status_code == 200


def test_non_loopback_host_is_refused() -> None:
    with pytest.raises(ValueError, match="loopback"):
        PioneerEmulator(host="0.0.0.0")


def _cli_env() -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }


def test_cli_serves_until_sigterm() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "airflow_provider_pioneer.testing",
            "--port",
            "0",
            "--bootstrap-key",
            "pio_sk_demo",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=_cli_env(),
    )
    try:
        assert proc.stdout is not None
        first, second = proc.stdout.readline().strip(), proc.stdout.readline().strip()
        assert first.startswith("Pioneer emulator on http://127.0.0.1:")
        assert second == "Bootstrap API key: pio_sk_demo"
        url = first.removeprefix("Pioneer emulator on ")
        resp = requests.post(
            f"{url}/inference",
            headers={"X-API-Key": "pio_sk_demo"},
            json={"model_id": MODEL, "text": EXAMPLE, "schema": {"entities": ["organization", "product"]}},
            timeout=5,
        )
        entities = resp.json()["result"]["entities"]
        assert (entities["organization"][0]["text"], entities["product"][0]["text"]) == (
            "Apple",
            "MacBook Pro",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_refuses_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_pioneer.testing", "--host", "0.0.0.0", "--port", "0"],
        capture_output=True,
        check=False,
        text=True,
        env=_cli_env(),
        timeout=30,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr


# -- API profiles ----------------------------------------------------------------------------------------
def bearer_infer(emu: PioneerEmulator, text: str, key: str) -> requests.Response:
    body = {"model_id": MODEL, "text": text, "schema": {"entities": ["organization"]}}
    return requests.post(
        f"{emu.url}/inference", headers={"Authorization": f"Bearer {key}"}, json=body, timeout=10
    )


def rate_headers(resp: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in resp.headers.items() if k.lower().startswith("x-ratelimit")}


def test_current_is_the_default_profile_and_legacy_keeps_june_behaviour(
    pioneer_emulator: PioneerEmulator, pioneer_emulator_legacy: PioneerEmulator
) -> None:
    current, legacy = pioneer_emulator, pioneer_emulator_legacy
    assert (current.api_profile, legacy.api_profile) == ("current", "legacy")
    resp = infer(current, EXAMPLE)
    assert resp.headers["X-RateLimit-Limit"] == "5000"  # per account and minute
    assert bearer_infer(current, EXAMPLE, current.api_key).status_code == 200

    resp = infer(legacy, EXAMPLE)
    assert resp.status_code == 200 and rate_headers(resp) == {}
    resp = bearer_infer(legacy, EXAMPLE, legacy.api_key)  # the June API knew X-API-Key only
    assert resp.status_code == 401 and resp.json() == {"detail": "Invalid or missing API key"}
    with pytest.raises(ValueError, match="legacy"):
        PioneerEmulator(spend_cap_tokens=10)  # the daily spend cap belongs to the legacy profile
    with pytest.raises(ValueError, match="current"):
        PioneerEmulator(api_profile="legacy", credit_ceiling_tokens=10)
    with pytest.raises(ValueError, match="current"):
        PioneerEmulator(api_profile="legacy", warmup_seconds=1)
    with pytest.raises(ValueError, match="api_profile"):
        PioneerEmulator(api_profile="2025")
    with pytest.raises(ValueError, match="current"):
        legacy.set_credit_ceiling(10)
    with pytest.raises(ValueError, match="legacy"):
        current.set_spend_cap(10)


def test_current_limit_is_shared_by_the_account_with_headers_and_coded_429() -> None:
    with PioneerEmulator(rate_limit_per_minute=60, rate_limit_burst=2) as emu:
        second_key = emu.create_key("second")  # same account: same counter
        first = infer(emu, "hello")
        assert first.status_code == 200
        assert rate_headers(first) == {
            "x-ratelimit-limit": "60",
            "x-ratelimit-remaining": "1",
            "x-ratelimit-reset": "1",  # whole seconds until the bucket is full again
        }
        second = bearer_infer(emu, "hello", second_key)
        assert second.status_code == 200 and second.headers["X-RateLimit-Remaining"] == "0"
        third = infer(emu, "hello")
        assert third.status_code == 429
        assert third.json() == {
            "detail": "Rate limit exceeded",
            "code": "rate_limited",
            "scope": "request-rate",
        }
        assert third.headers["X-RateLimit-Code"] == "rate_limited"
        assert third.headers["X-RateLimit-Scope"] == "request-rate"
        assert third.headers["Retry-After"] == "1" and third.headers["X-RateLimit-Remaining"] == "0"
        other, _ = emu.new_account()
        assert infer(emu, "hello", key=other).status_code == 200  # another account, another counter

        mine = emu.account_counters()
        assert (mine["inference_requests"], mine["inference_rpm_peak"]) == (3, 3)
        assert (mine["inference_rpm_peak_admitted"], mine["rate_limited"]) == (2, 1)
        assert emu.account_counters(account_of_key=other)["inference_rpm_peak"] == 1
        c = emu.counters()
        assert (c["rate_limited"], c["inference_rpm_peak"], c["statuses"]["429"]) == (1, 3, 1)
        emu.reset_counters()
        assert emu.account_counters()["inference_rpm_peak"] == 0


def test_rate_limit_headers_can_be_hidden() -> None:
    with PioneerEmulator(rate_limit_per_minute=60, rate_limit_burst=1, rate_limit_headers=False) as emu:
        assert rate_headers(infer(emu, "hello")) == {}
        limited = infer(emu, "hello")
        # Retry-After only (and the 429's code and scope), as for pacing without the headers.
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
        assert set(rate_headers(limited)) == {"x-ratelimit-code", "x-ratelimit-scope"}
        emu.set_rate_limit_headers(True)
        emu.set_rate_limit(None)
        assert rate_headers(infer(emu, "hello")) == {}  # no limit, nothing to describe
        emu.set_rate_limit(600)
        assert rate_headers(infer(emu, "hello"))["x-ratelimit-limit"] == "600"


def test_current_402_has_a_billing_code_and_a_resolution_url(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    key, _ = emu.new_account(credits=8)
    assert infer(emu, EXAMPLE, key=key).status_code == 200  # 5 tokens, 3 left
    resp = infer(emu, EXAMPLE, key=key)
    assert resp.status_code == 402
    body = resp.json()
    assert set(body) == {"code", "message", "resolution_url"}
    assert body["code"] == "out_of_credits" and "3 tokens left" in body["message"]
    assert body["resolution_url"] == "https://agent.pioneer.ai/credits"
    emu.set_credits(0, account_of_key=key, code="direct_model_requires_credits")
    for resp in (
        infer(emu, "one", key=key),
        keys_call(emu, "GET", "list-api-keys", key=key),
        keys_call(emu, "POST", "create-api-key", key=key, json={"name": "x"}),
    ):
        assert resp.status_code == 402 and resp.json()["code"] == "direct_model_requires_credits"
    assert emu.counters()["tokens_billed"] == 5
    with pytest.raises(ValueError, match="code"):
        emu.set_credits(0, code="broke")


def test_current_monthly_credit_ceiling_answers_403(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    key, _ = emu.new_account(credit_ceiling_tokens=6)
    assert infer(emu, EXAMPLE, key=key).status_code == 200
    resp = infer(emu, EXAMPLE, key=key)
    assert resp.status_code == 403
    body = resp.json()
    assert body["code"] == "credit_ceiling_reached" and "6 tokens" in body["message"]
    assert body["resolution_url"] == "https://agent.pioneer.ai/credits"
    assert keys_call(emu, "GET", "list-api-keys", key=key).status_code == 200  # the key itself is fine
    emu.set_credit_ceiling(3, code="card_required", account_of_key=key)  # also restarts the month's spend
    assert infer(emu, "three words here", key=key).status_code == 200
    resp = infer(emu, "one", key=key)
    assert resp.status_code == 403 and resp.json()["code"] == "card_required"
    assert emu.account_counters(account_of_key=key)["spent_this_month"] == 3
    emu.set_credit_ceiling(None, account_of_key=key)
    assert infer(emu, EXAMPLE, key=key).status_code == 200
    assert emu.counters()["tokens_billed"] == 5 + 3 + 5  # refused calls bill nothing


def test_current_model_warm_up_answers_425_with_retry_after() -> None:
    with PioneerEmulator(warmup_seconds=1) as emu:
        first = infer(emu, EXAMPLE)
        assert first.status_code == 425 and first.headers["Retry-After"] == "1"
        assert "warming up" in first.json()["detail"]
        assert infer(emu, EXAMPLE).status_code == 425
        time.sleep(float(first.headers["Retry-After"]) + 0.05)
        assert infer(emu, EXAMPLE).status_code == 200
        assert infer(emu, EXAMPLE, model_id="job_other").status_code == 425  # each model warms on its own
        assert emu.counters()["text_counts"] == {EXAMPLE: 1}  # a 425 bills nothing
        emu.set_warmup(0)
        assert infer(emu, EXAMPLE, model_id="job_other").status_code == 200


def test_current_unservable_model_answers_409() -> None:
    with PioneerEmulator(unservable_models=["job_pending"]) as emu:
        resp = infer(emu, EXAMPLE, model_id="job_pending")
        assert resp.status_code == 409 and "job_pending" in resp.json()["detail"]
        assert "supports_on_demand_inference" in resp.json()["detail"]
        assert infer(emu, EXAMPLE, model_id="job_unservable_7").status_code == 409  # the marker prefix
        assert infer(emu, EXAMPLE, model_id="job_ready").status_code == 200
        assert infer(emu, EXAMPLE, model_id="fastino/nope").status_code == 404  # unknown stays 404
        emu.set_unservable_models([])
        assert infer(emu, EXAMPLE, model_id="job_pending").status_code == 200
    with PioneerEmulator(api_profile="legacy") as legacy:
        assert infer(legacy, EXAMPLE, model_id="job_unservable_7").status_code == 200
        with pytest.raises(ValueError, match="current"):
            legacy.set_unservable_models(["job_x"])


def test_current_create_api_key_is_limited_per_account_and_hour(
    pioneer_emulator: PioneerEmulator, pioneer_emulator_legacy: PioneerEmulator
) -> None:
    emu = pioneer_emulator
    made = [keys_call(emu, "POST", "create-api-key", json={"name": f"k{i}"}).status_code for i in range(50)]
    assert made == [200] * 50
    resp = keys_call(emu, "POST", "create-api-key", json={"name": "one-too-many"})
    assert resp.status_code == 429 and resp.json()["code"] == "rate_limited"
    assert 3500 < int(resp.headers["Retry-After"]) <= 3600
    assert "one-too-many" not in emu.alive_key_names()
    assert emu.account_counters()["keys_created_last_hour"] == 50
    assert emu.counters()["keys_created_last_hour"] == 50
    other, _ = emu.new_account()
    assert keys_call(emu, "POST", "create-api-key", key=other, json={"name": "x"}).status_code == 200
    emu.create_key("admin-made")  # the admin API is not the limited route
    emu.set_create_key_limit(None)
    assert keys_call(emu, "POST", "create-api-key", json={"name": "now-fine"}).status_code == 200

    legacy = pioneer_emulator_legacy
    made = [
        keys_call(legacy, "POST", "create-api-key", json={"name": f"k{i}"}).status_code for i in range(51)
    ]
    assert made == [200] * 51


def test_profile_and_limits_reach_a_subprocess_emulator() -> None:
    with PioneerEmulator(
        subprocess=True, api_profile="legacy", rate_limit_per_minute=60, rate_limit_burst=1
    ) as legacy:
        assert legacy.api_profile == "legacy"
        assert bearer_infer(legacy, EXAMPLE, legacy.api_key).status_code == 401
    with PioneerEmulator(
        subprocess=True,
        rate_limit_headers=False,
        create_key_limit_per_hour=1,
        warmup_seconds=30,
        unservable_models=["job_pending"],
        max_body_bytes=500,
    ) as emu:
        assert emu.api_profile == "current"
        assert infer(emu, EXAMPLE, model_id="job_pending").status_code == 409
        warming = infer(emu, EXAMPLE)
        assert warming.status_code == 425 and rate_headers(warming) == {}
        assert infer(emu, "x " * 300).status_code == 413
        assert keys_call(emu, "POST", "create-api-key", json={"name": "a"}).status_code == 200
        assert keys_call(emu, "POST", "create-api-key", json={"name": "b"}).status_code == 429


def test_cli_api_profile_and_refused_combinations() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_pioneer.testing", "--port", "0", "--api-profile", "legacy"],
        stdout=subprocess.PIPE,
        text=True,
        env=_cli_env(),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip().removeprefix("Pioneer emulator on ")
        proc.stdout.readline()
        assert EmulatorControl(url).api_profile == "legacy"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    result = subprocess.run(
        [sys.executable, "-m", "airflow_provider_pioneer.testing", "--port", "0", "--spend-cap-tokens", "5"],
        capture_output=True,
        check=False,
        text=True,
        env=_cli_env(),
        timeout=30,
    )
    assert result.returncode == 2 and "api_profile='legacy'" in result.stderr
    assert "Traceback" not in result.stderr


# -- faults for hostile-server tests ----------------------------------------------------------------------
def raw_post(
    emu: PioneerEmulator, body: bytes, headers: dict[str, str] | None = None
) -> tuple[bytes, list[bytes]]:
    """POST /inference over a plain socket; returns (head, body chunks as each recv() returned them)."""
    import socket

    head = {"Host": "emulator", "Content-Type": "application/json", "Content-Length": str(len(body)),
            "X-API-Key": emu.api_key, "Connection": "close", **(headers or {})}  # fmt: skip
    request = "POST /inference HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
        sock.sendall(request.encode() + body)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head_bytes, first = data.split(b"\r\n\r\n", 1)
        chunks = [first] if first else []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return head_bytes, chunks


def test_trickle_sends_a_success_body_a_few_bytes_at_a_time(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    fault = emu.inject(fault="trickle", trickle_bytes=20, trickle_interval=0.05, times=1)
    body = json.dumps({"model_id": MODEL, "text": EXAMPLE, "schema": {"entities": ["organization"]}})
    started = time.perf_counter()
    head, chunks = raw_post(emu, body.encode())
    elapsed = time.perf_counter() - started
    length = int(
        next(
            line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
    )
    payload = b"".join(chunks)
    assert head.startswith(b"HTTP/1.1 200") and len(payload) == length
    assert json.loads(payload)["result"]["entities"]["organization"][0]["text"] == "Apple"
    # The headers (with the full Content-Length) came first; the body followed in 20-byte steps,
    # 50 ms apart, so reading it took at least that long.
    assert len(chunks) > 1 and len(chunks[0]) < length
    assert elapsed >= (math.ceil(length / 20) - 1) * 0.05
    assert emu.counters()["faults_fired"] == {fault: 1}
    assert emu.counters()["text_counts"] == {EXAMPLE: 1}  # processed and billed as usual
    assert infer(emu, EXAMPLE).status_code == 200  # once only


def test_trickle_stops_when_the_client_hangs_up(pioneer_emulator: PioneerEmulator) -> None:
    import socket

    emu = pioneer_emulator
    emu.inject(fault="trickle", trickle_bytes=1, trickle_interval=0.2, times=1)  # about a minute of body
    body = json.dumps({"model_id": MODEL, "text": EXAMPLE, "schema": ["organization"]}).encode()
    request = (
        f"POST /inference HTTP/1.1\r\nHost: e\r\nX-API-Key: {emu.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((emu.host, emu.port), timeout=10) as sock:
        sock.sendall(request + body)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert emu.counters()["inference_in_flight"] == 1
    deadline = time.monotonic() + 10
    while emu.counters()["inference_in_flight"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.counters()["inference_in_flight"] == 0  # the server stopped trickling into the void


def test_trickle_an_error_answer(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.inject(
        fault="trickle", status=503, body={"detail": "upstream busy"}, trickle_bytes=4, trickle_interval=0.01
    )
    started = time.perf_counter()
    resp = infer(emu, EXAMPLE)
    assert resp.status_code == 503 and resp.json() == {"detail": "upstream busy"}
    assert time.perf_counter() - started >= (math.ceil(len(resp.content) / 4) - 1) * 0.01
    emu.clear_faults()
    emu.inject(fault="trickle", trickle_bytes=4, trickle_interval=0.01, times=1)  # a real error, trickled
    resp = infer(emu, EXAMPLE, key="pio_sk_unknown")
    assert resp.status_code == 401 and resp.json() == {"detail": "Invalid or missing API key"}
    assert emu.counters()["tokens_billed"] == 0


# Not issued by the emulator, so safe to show in a failure report; no repeated piece.
FAKE_KEY = "pio_sk_" + hashlib.sha256(b"echo").hexdigest()[:48]


def _echoed_text(resp: requests.Response, envelope: str) -> list[str]:
    if envelope == "detail":
        return [resp.json()["detail"]]
    if envelope == "message":
        return [resp.json()["message"]]
    if envelope == "html":
        return re.findall(r"<title>(.*)</title>.*<p>(.*)</p>", resp.text, re.S)[0]
    return [resp.text]


@pytest.mark.parametrize("envelope", ["detail", "message", "html", "text"])
def test_echo_key_puts_the_key_at_an_offset_in_a_body_of_a_given_size(
    pioneer_emulator: PioneerEmulator, envelope: str
) -> None:
    emu = pioneer_emulator
    n = len(FAKE_KEY)
    for size, offset in [(200, 0), (200, 37), (300, 150), (10_000, 5_000), (120, -20), (10_240, 10_000)]:
        emu.inject(fault="echo_key", envelope=envelope, body_size=size, offset=offset, times=1)
        resp = infer(emu, EXAMPLE, key=FAKE_KEY)
        assert resp.status_code == 401 and len(resp.content) == size, (size, offset)
        for text in _echoed_text(resp, envelope):
            expected = "".join(FAKE_KEY[i - offset] if 0 <= i - offset < n else "" for i in range(len(text)))
            window = text[max(0, offset) : max(0, offset + n)]
            assert window == expected, (size, offset)  # the key (or its visible piece) at the offset
            assert text.count(FAKE_KEY[20:28]) == (1 if 20 + offset >= 0 and 28 + offset <= len(text) else 0)
    content_types = {"detail": "application/json", "message": "application/json", "html": "text/html",
                     "text": "text/plain"}  # fmt: skip
    assert resp.headers["content-type"].startswith(content_types[envelope])


def test_echo_key_small_bodies_bearer_keys_and_other_statuses(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.inject(fault="echo_key", envelope="text", body_size=10, offset=3, times=1)
    resp = infer(emu, EXAMPLE, key=FAKE_KEY)
    assert resp.content == b"Inv" + FAKE_KEY[:7].encode()  # a 10-byte body holds only the key's head
    emu.inject(fault="echo_key", status=500, envelope="message", times=1)  # no size: the whole key fits
    resp = bearer_infer(emu, EXAMPLE, FAKE_KEY)
    assert resp.status_code == 500 and resp.json()["message"] == FAKE_KEY
    assert resp.json()["error"] == "internal_server_error"
    emu.inject(fault="echo_key", envelope="detail", offset=-40, times=1)
    assert infer(emu, EXAMPLE, key=FAKE_KEY).json()["detail"] == FAKE_KEY[40:]
    with pytest.raises(ValueError, match="at least 15 bytes"):
        emu.inject(fault="echo_key", envelope="detail", body_size=10)
    with pytest.raises(ValueError, match="envelope"):
        emu.inject(fault="echo_key", envelope="xml")
    assert emu.counters()["tokens_billed"] == 0


def test_body_size_limit_answers_a_proxys_413_and_bills_nothing() -> None:
    big = "word " * 400  # about 2 KB of JSON body
    with PioneerEmulator(max_body_bytes=1000) as emu:
        session = requests.Session()
        ok = session.post(
            f"{emu.url}/inference",
            headers={"X-API-Key": emu.api_key},
            json={"model_id": MODEL, "text": ["small", "texts"], "schema": ["organization"]},
            timeout=10,
        )
        assert ok.status_code == 200
        resp = session.post(
            f"{emu.url}/inference",
            headers={"X-API-Key": emu.api_key},
            json={"model_id": MODEL, "text": ["small", big], "schema": ["organization"]},
            timeout=10,
        )
        assert resp.status_code == 413 and resp.headers["content-type"].startswith("text/html")
        assert "<title>413 Request Entity Too Large</title>" in resp.text and "nginx" in resp.text
        assert resp.headers["connection"] == "close"
        assert infer(emu, "after").status_code == 200  # the emulator goes on

        def chunked(text: str) -> Iterator[bytes]:  # no Content-Length: the size is counted as it comes
            data = json.dumps({"model_id": MODEL, "text": text, "schema": ["organization"]}).encode()
            yield from (data[i : i + 100] for i in range(0, len(data), 100))

        for text, status in ((big, 413), ("Apple, chunked", 200)):
            resp = requests.post(
                f"{emu.url}/inference",
                headers={"X-API-Key": emu.api_key, "Content-Type": "application/json"},
                data=chunked(text),
                timeout=10,
            )
            assert resp.status_code == status
        emu.set_max_body_bytes(1000, response="json")
        resp = infer(emu, big)
        assert resp.status_code == 413 and resp.json() == {"detail": "Request Entity Too Large"}
        emu.set_max_body_bytes(None)
        assert infer(emu, big).status_code == 200
        c = emu.counters()
        assert c["statuses"]["413"] == 3 and c["requests"]["POST /inference"] == 7
        assert c["text_counts"] == {"small": 1, "texts": 1, "after": 1, "Apple, chunked": 1, big: 1}


def test_bad_results_spoil_entries_of_a_billed_200(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    texts = ["Apple one", "Google two", "Tesla three", "Meta four"]
    cases = {
        "null": None,
        "string": "error: could not process this text",
        "entities_null": {"entities": None},
        "no_entities": {},
    }
    for bad, spoiled in cases.items():
        emu.inject(fault="bad_results", indices=[1, -1], bad=bad, times=1)
        result = infer(emu, texts).json()["result"]
        assert result[1] == result[3] == spoiled, bad
        assert result[0]["entities"] and result[2]["entities"], bad
    emu.inject(fault="bad_results", indices=[-1], bad="missing", times=1)
    resp = infer(emu, texts)
    assert resp.status_code == 200 and len(resp.json()["result"]) == 3  # a shorter list
    emu.inject(fault="bad_results", bad="null", times=1)  # every entry; a single text's result
    assert infer(emu, EXAMPLE).json()["result"] is None
    emu.inject(fault="bad_results", bad="missing", times=1)
    assert "result" not in infer(emu, EXAMPLE).json()
    # A 200 from a real server was billed, whatever its entries look like.
    c = emu.counters()
    assert c["text_counts"] == {**{t: 5 for t in texts}, EXAMPLE: 2}
    assert c["tokens_billed"] == 5 * 8 + 2 * 5
    assert infer(emu, texts).json()["result"][1]["entities"] is not None  # faults used up
    with pytest.raises(ValueError, match="path"):
        emu.inject(fault="bad_results", path="/create-api-key")
    with pytest.raises(ValueError, match="bad must be one of"):
        emu.inject(fault="bad_results", bad="nan")
    with pytest.raises(ValueError, match="unexpected keyword"):
        emu._call("POST", "faults", {"fault": "drop", "no_such_option": 1})


def test_a_text_that_is_not_valid_unicode_is_a_422_naming_it(pioneer_emulator: PioneerEmulator) -> None:
    body = '{"model_id": "fastino/gliner2-base-v1", "text": ["ok", "bad \\ud83d"], "schema": {"entities": ["person"]}}'
    r = requests.post(
        f"{pioneer_emulator.url}/inference",
        data=body,
        headers={"X-API-Key": pioneer_emulator.api_key, "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == 422
    assert [e["loc"] for e in r.json()["detail"]] == [["body", "text", 1]]
