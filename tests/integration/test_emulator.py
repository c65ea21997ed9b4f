"""The Pioneer emulator over real HTTP (``requests`` to 127.0.0.1), as clients will see it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_pioneer.testing import BASE_MODELS, EmulatorControl, PioneerEmulator, pytest_plugin

# The plugin's own fixture, bound here too so it works without the pytest11 entry point (no install).
pioneer_emulator = pytest_plugin.pioneer_emulator

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
def test_out_of_credits_gets_402_everywhere(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
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


def test_rate_limit_429_with_retry_after(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.set_rate_limit(60, burst=2)
    statuses = [infer(emu, "hello world") for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert statuses[2].json() == {"detail": "Rate limit exceeded"}
    assert int(statuses[2].headers["Retry-After"]) == 1
    other, _ = emu.new_account()
    assert infer(emu, "hello", key=other).status_code == 200  # per key
    emu.set_rate_limit(None)
    assert all(infer(emu, "hello").status_code == 200 for _ in range(5))


def test_daily_spend_cap(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
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
