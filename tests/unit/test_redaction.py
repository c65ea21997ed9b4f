"""No piece of a key survives a summary: redaction runs on whole bodies, before any cut (issue 8 item 2)."""

from __future__ import annotations

import json

import pytest
import requests

from airflow_provider_pioneer.http_errors import error_for_response
from airflow_provider_pioneer.redaction import FRAGMENT, Redactor

KEY = "pio_sk_" + "0123456789abcdef" * 3  # 55 characters, like an emulator key
RANDOM_PART = KEY.removeprefix("pio_sk_")
BODY_SIZES = (10, 64, 333, 1024, 10_240)


def fragments(key: str = RANDOM_PART) -> set[str]:
    return {key[i : i + FRAGMENT] for i in range(len(key) - FRAGMENT + 1)}


def leaks(text: str) -> list[str]:
    return sorted(f for f in fragments() if f in text)


def body_with_key(size: int, offset: int, envelope: str) -> tuple[str, str]:
    """A body of about ``size`` filler characters (plus the key) with the key at ``offset`` of the filler."""
    filler = ("lorem ipsum dolor sit amet " * (size // 27 + 1))[:size]
    offset = min(offset, len(filler))
    text = filler[:offset] + KEY + filler[offset:]
    if envelope == "detail":
        return json.dumps({"detail": text}), "application/json"
    if envelope == "detail_escaped":  # the key in JSON \u escapes: whole again once parsed
        escaped = "".join(f"\\u{ord(c):04x}" for c in KEY)
        return json.dumps({"detail": text}).replace(KEY, escaped), "application/json"
    if envelope == "nested_escaped":  # as an object key, deep in a validation error
        escaped = "".join(f"\\u{ord(c):04x}" for c in KEY)
        doc = {"detail": [{"loc": ["body", "text", 0], "msg": "bad", "input": {text: 1}}]}
        return json.dumps(doc).replace(KEY, escaped), "application/json"
    if envelope == "html_entities":  # the key as character references: whole again once decoded
        escaped = "".join(f"&#{ord(c)};" for c in KEY)
        return f"<html><head><title>{text.replace(KEY, escaped)}</title></head></html>", "text/html"
    if envelope == "message":
        return json.dumps({"error": "unauthorized", "message": text}), "application/json"
    if envelope == "billing":
        return json.dumps({"code": "out_of_credits", "message": text}), "application/json"
    if envelope == "html_title":
        return f"<html><head><title>{text}</title></head><body>x</body></html>", "text/html"
    if envelope == "html_body":
        return f"<html><body><h1>Error</h1><p>{text}</p></body></html>", "text/html"
    return text, "text/plain"


def response(status: int, body: str, content_type: str) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = "Reason"
    r._content = body.encode()
    r.headers["Content-Type"] = content_type
    return r


#: The envelopes the issue names (both JSON envelopes and HTML): every offset of every size.
EVERY_OFFSET = ("detail", "message", "html_title")


def offsets(size: int, envelope: str) -> list[int]:
    if size <= 1024 or envelope in EVERY_OFFSET:
        return list(range(size + 1))
    # The other envelopes' 10 KB bodies: every offset around the summary's cut (300 characters)
    # and the body's end, a stride elsewhere (every offset of all nine cost 40 s of each suite run).
    near = {*range(0, 600), *range(size - 100, size + 1)}
    return sorted(near | set(range(0, size + 1, 97)))


@pytest.mark.parametrize(
    "envelope",
    ["detail", "detail_escaped", "nested_escaped", "message", "billing", "html_title", "html_body",
     "html_entities", "text"],
)  # fmt: skip
@pytest.mark.parametrize("size", BODY_SIZES)
def test_no_eight_character_piece_of_an_echoed_key_survives(envelope: str, size: int) -> None:
    redactor = Redactor([KEY])
    # The status only picks the exception's class: both for the small bodies, one for 10 KB.
    for status in (401, 500) if size < 10_240 else (500,):
        for offset in offsets(size, envelope):
            body, content_type = body_with_key(size, offset, envelope)
            err = error_for_response(response(status, body, content_type), "POST /inference", redactor.redact)
            shown = " ".join([str(err), repr(err), err.message, json.dumps(err.detail, default=str)])
            assert not leaks(shown), (status, envelope, size, offset, leaks(shown))


def test_without_redaction_the_cut_would_leave_most_of_the_key() -> None:
    # The failure this guards against: the old order (cut to 300, then replace the WHOLE key) left
    # a long piece of the key behind the cut. Prove the body really reaches past the cut here.
    body, content_type = body_with_key(1024, 270, "detail")
    err = error_for_response(response(401, body, content_type), "GET /list-api-keys")
    assert leaks(str(err))  # no redaction at all: pieces are there
    cut_then_whole = str(err).replace(KEY, "***")
    assert leaks(cut_then_whole)  # whole-key replacement after the cut does not catch them


def test_redactor_masks_whole_keys_partial_echoes_and_leaves_other_text() -> None:
    redactor = Redactor([KEY])
    assert redactor.redact(f"key={KEY}.") == "key=***."
    assert redactor.redact(f"key={KEY[:20]}... rejected") == "key=***... rejected"
    assert redactor.redact(f"tail {KEY[-9:]}") == "tail ***"
    assert redactor.redact("nothing secret here, 0123456") == "nothing secret here, 0123456"
    assert KEY in redactor and "plain" not in redactor
    short = Redactor(["abc"])
    assert short.redact("xabcx") == "x***x"
