"""The emulator and the hook against Pioneer's published OpenAPI document.

Requests are generated from ``EncoderInferenceRequest`` (every property, both forms of ``text`` and
``schema``, boundary values), sent to the emulator over HTTP, and each response is validated against
the document's response schema for its status. The hook's own request bodies are captured on the wire
and validated against the request schema.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.testing import BASE_MODELS, PioneerEmulator

WORDS = ["Apple", "Google", "announced", "MacBook", "Pro", "in", "Paris", "on", "March", "3,", "2025"]
LABELS = ["organization", "product", "location", "person", "date", "money"]


@pytest.fixture(scope="module", params=["legacy", "current"])
def emu(request: pytest.FixtureRequest) -> Iterator[PioneerEmulator]:
    """Both API generations: the document is June 2026's, and today's answers must still fit it."""
    with PioneerEmulator(rate_limit_per_minute=None, api_profile=request.param) as emulator:
        yield emulator


def _text(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12))) + "."


def valid_request(rng: random.Random, request_schema: dict[str, Any]) -> dict[str, Any]:
    """One request drawn over every property EncoderInferenceRequest declares."""
    props = request_schema["properties"]
    labels = rng.sample(LABELS, rng.randint(1, len(LABELS)))
    body: dict[str, Any] = {
        "model_id": rng.choice([m if isinstance(m, str) else m["id"] for m in BASE_MODELS] + ["job_abc123"]),
        "text": _text(rng) if rng.random() < 0.4 else [_text(rng) for _ in range(rng.randint(1, 20))],
    }
    form = rng.random()
    if form < 0.45:
        body["schema"] = {"entities": labels}
    elif form < 0.9:
        body["schema"] = {"entities": [{"name": lab, "description": f"a {lab}"} for lab in labels]}
    else:
        body["schema"] = labels  # deprecated flat list, still accepted
    optional = [p for p in props if p not in ("model_id", "text", "schema")]
    for name in rng.sample(optional, rng.randint(0, len(optional))):
        kind = props[name].get("type")
        if kind == "number":
            body[name] = rng.choice(
                [props[name].get("minimum", 0.0), props[name].get("maximum", 1.0), rng.random()]
            )
        elif kind == "boolean":
            body[name] = rng.random() < 0.5
        elif kind == "string":
            body[name] = f"proj_{rng.randint(1, 99)}"
    return body


def invalid_requests(rng: random.Random) -> Iterator[tuple[str, dict[str, Any]]]:
    base = {"model_id": "fastino/gliner2-base-v1", "text": "Apple.", "schema": {"entities": ["organization"]}}
    for field in ("model_id", "text", "schema"):
        yield f"missing {field}", {k: v for k, v in base.items() if k != field}
    yield "threshold above maximum", {**base, "threshold": 1.5}
    yield "threshold below minimum", {**base, "threshold": -0.01}
    yield "text of wrong type", {**base, "text": 42}
    yield "empty text in a batch", {**base, "text": ["Apple.", "   ", "Google."]}
    yield "empty batch", {**base, "text": []}


def _post(emu: PioneerEmulator, body: Any, key: str | None = None) -> requests.Response:
    return requests.post(
        f"{emu.url}/inference", json=body, headers={"X-API-Key": key or emu.api_key}, timeout=10
    )


def _errors(validator: Any, instance: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)][:5]


def test_generated_requests_get_responses_that_match_the_document(emu: PioneerEmulator, openapi: Any) -> None:
    request_schema = openapi.doc["components"]["schemas"]["EncoderInferenceRequest"]
    request_validator = openapi.request("/inference", "post")
    ok_validator = openapi.response("/inference", "post", 200)
    rng = random.Random(20261126)
    for _ in range(150):
        body = valid_request(rng, request_schema)
        assert not _errors(request_validator, body), body  # the generator itself stays inside the document
        resp = _post(emu, body)
        assert resp.status_code == 200, (body, resp.text)
        doc = resp.json()
        assert not _errors(ok_validator, doc), (body, _errors(ok_validator, doc))
        texts = body["text"] if isinstance(body["text"], list) else [body["text"]]
        results = doc["result"] if isinstance(body["text"], list) else [doc["result"]]
        assert len(results) == len(texts)
        if isinstance(body["schema"], list):
            assert resp.headers.get("Deprecation") == "true" and resp.headers.get("Sunset")


def test_invalid_requests_get_the_validation_envelope(emu: PioneerEmulator, openapi: Any) -> None:
    validator = openapi.response("/inference", "post", 422)
    request_validator = openapi.request("/inference", "post")
    for name, body in invalid_requests(random.Random(1)):
        resp = _post(emu, body)
        assert resp.status_code == 422, (name, resp.status_code, resp.text)
        assert not _errors(validator, resp.json()), (name, resp.json())
        assert isinstance(resp.json()["detail"], list) and resp.json()["detail"], name
        if name.startswith(("missing", "threshold", "text of")):
            assert _errors(request_validator, body), f"{name}: the document should reject it too"


@pytest.mark.parametrize(
    ("status", "setup"),
    [
        (401, lambda emu: None),
        (404, lambda emu: None),
        (402, lambda emu: emu.set_credits(0)),
        (429, lambda emu: emu.inject(status=429, times=1, headers={"Retry-After": "1"})),
    ],
)
def test_error_responses_match_the_document(
    emu: PioneerEmulator, openapi: Any, status: int, setup: Any
) -> None:
    body = {"model_id": "fastino/gliner2-base-v1", "text": "Apple.", "schema": {"entities": ["organization"]}}
    key = None
    if status == 401:
        key = "pio_sk_" + "0" * 32
    if status == 404:
        body["model_id"] = "no-such/model"
    setup(emu)
    try:
        resp = _post(emu, body, key)
    finally:
        emu.set_credits(None)
        emu.clear_faults()
    assert resp.status_code == status
    assert not _errors(openapi.response("/inference", "post", status), resp.json())
    if status == 429:
        assert resp.headers["Retry-After"].isdigit()  # the document: an integer number of seconds


def test_model_list_matches_the_document(emu: PioneerEmulator, openapi: Any) -> None:
    resp = requests.get(f"{emu.url}/v1/models", headers={"X-API-Key": emu.api_key}, timeout=10)
    assert resp.status_code == 200
    assert not _errors(openapi.response("/v1/models", "get", 200), resp.json())
    page = requests.get(f"{emu.url}/v1/models?limit=1", headers={"X-API-Key": emu.api_key}, timeout=10).json()
    assert len(page["data"]) == 1 and page["has_more"] is True
    assert not _errors(openapi.response("/v1/models", "get", 200), page)


def test_the_hooks_own_requests_match_the_document(emu: PioneerEmulator, openapi: Any) -> None:
    request_validator = openapi.request("/inference", "post")
    auth = openapi.doc["components"]["securitySchemes"]["ApiKeyAuth"]
    sent: list[requests.PreparedRequest] = []
    client = PioneerClient(emu.url, emu.api_key)
    client._session.hooks["response"].append(lambda r, *a, **k: sent.append(r.request))
    client.infer(
        "Apple announced the MacBook Pro.",
        schema={"entities": ["organization"]},
        model_id="fastino/gliner2-base-v1",
    )
    client.infer(
        ["Apple.", "Google."],
        schema={"entities": [{"name": "organization", "description": "a company"}]},
        model_id="fastino/gliner2-base-v1",
        threshold=0.0,
        include_confidence=False,
        include_spans=True,
        store=False,
        project_id="proj_1",
        unused_option=None,  # None options are not sent
    )
    inference = [r for r in sent if r.path_url == "/inference"]
    assert len(inference) == 2
    for req in inference:
        body = json.loads(req.body or b"{}")
        assert not _errors(request_validator, body), body
        assert "unused_option" not in body
        assert req.headers[auth["name"]] == emu.api_key  # X-API-Key, as the security scheme says
        assert req.headers["Content-Type"] == "application/json"
