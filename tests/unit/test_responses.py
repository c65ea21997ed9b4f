"""Error responses -> typed exceptions; both envelopes; HTML summarised; Retry-After parsing."""

from __future__ import annotations

import email.utils
import json

import pytest
import requests

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.http_errors import error_for_response, parse_retry_after, summarize_body


def response(status: int, body: object = None, content_type: str = "application/json", **headers: str):
    r = requests.Response()
    r.status_code = status
    r.reason = "Reason"
    raw = body if isinstance(body, str) else json.dumps(body) if body is not None else ""
    r._content = raw.encode()
    r.headers["Content-Type"] = content_type
    r.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    return r


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ex.PioneerValidationError),
        (401, ex.PioneerAuthError),
        (402, ex.PioneerPaymentRequiredError),
        (403, ex.PioneerAuthError),
        (404, ex.PioneerNotFoundError),
        (422, ex.PioneerValidationError),
        (429, ex.PioneerRateLimitError),
        (500, ex.PioneerServerError),
        (502, ex.PioneerServerError),
        (503, ex.PioneerServerError),
        (504, ex.PioneerServerError),
        (409, ex.PioneerModelNotServableError),
        (413, ex.PioneerPayloadTooLargeError),
        (425, ex.PioneerModelWarmingError),
        (529, ex.PioneerServerError),
        (408, ex.PioneerServerError),
        (418, ex.PioneerError),
    ],
)
def test_every_status_maps_to_its_exception(status: int, cls: type[ex.PioneerError]) -> None:
    err = error_for_response(response(status, {"detail": "nope"}), "POST /inference")
    assert ("Check the model_id" in str(err)) == (status == 404)
    assert type(err) is cls
    assert err.status == status
    assert f"HTTP {status}" in str(err) and "nope" in str(err)
    assert isinstance(err, ex.PioneerError)


def test_spend_cap_is_its_own_error() -> None:
    r = response(429, {"detail": "cap"}, X_RateLimit_Reason="daily_spend_cap_exceeded", Retry_After="3600")
    err = error_for_response(r, "POST /inference")
    assert isinstance(err, ex.PioneerSpendCapError)
    assert "00:00 UTC" in str(err)


def test_validation_envelope_is_summarised_with_indices() -> None:
    detail = [
        {"loc": ["body", "text", 3], "msg": "String should have at least 1 character", "type": "x"},
        {"loc": ["body", "threshold"], "msg": "too big", "type": "y"},
    ]
    err = error_for_response(response(422, {"detail": detail}), "POST /inference")
    assert isinstance(err, ex.PioneerValidationError)
    assert err.invalid_indices == (3,)
    assert err.text_errors == {3: "String should have at least 1 character"}
    assert "text.3: String should have at least 1 character" in str(err)
    assert "threshold: too big" in str(err)


def test_legacy_error_envelope() -> None:
    err = error_for_response(response(401, {"error": "unauthorized", "message": "bad key"}), "GET /x")
    assert isinstance(err, ex.PioneerAuthError)
    assert "unauthorized: bad key" in str(err)


def test_html_proxy_page_becomes_one_line() -> None:
    html = "<html><head><title>502 Bad Gateway</title></head><body>" + "<p>x</p>" * 5000 + "</body></html>"
    err = error_for_response(response(502, html, "text/html"), "POST /inference")
    text = str(err)
    assert "502 Bad Gateway" in text
    assert "\n" not in text and len(text) < 500 and "<p>" not in text


def test_server_echo_of_the_key_is_redacted() -> None:
    key = "pio_sk_" + "a" * 32
    err = error_for_response(
        response(401, {"detail": f"key {key} revoked"}), "GET /list-api-keys", lambda s: s.replace(key, "***")
    )
    assert key not in str(err) and "***" in str(err)


def test_empty_body_uses_reason() -> None:
    assert summarize_body(response(503, None))[0] == "Reason"


def test_retry_after_seconds_and_http_date() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(" 1.5 ") == 1.5
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=lambda: now) == pytest.approx(30, abs=1)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=lambda: now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_errors_survive_pickling() -> None:
    import pickle

    err = ex.PioneerValidationError("bad", status=422, detail=[1], text_errors={2: "empty"})
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is ex.PioneerValidationError
    assert (back.status, back.detail, back.text_errors, str(back)) == (422, [1], {2: "empty"}, "bad")


def test_a_404_on_key_management_does_not_blame_the_model() -> None:
    err = error_for_response(response(404, {"detail": "no such key"}), "DELETE /delete-api-key")
    assert isinstance(err, ex.PioneerNotFoundError) and "model_id" not in str(err)
