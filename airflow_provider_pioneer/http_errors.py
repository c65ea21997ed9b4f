"""The error mapping: Pioneer's HTTP error answers to typed exceptions, whichever library received them.

It reads an :class:`Answer` (status, headers, body as plain values), so the sync client (requests)
and the triggers' async reader (httpx) share it; :func:`error_for_response` also takes either
library's response object as it is.

Every error envelope of the API is understood: FastAPI's ``{"detail": ...}`` (a
string, an object, or a list of validation errors), the older ``{"error", "message"}``,
the billing ``{"code", "message", "resolution_url"}`` and the OpenAI-compatible
``{"error": {code, message}}``; both API generations' statuses (June 2026: 429 spend
cap; August 2026: 402/403 billing codes, 409, 413, 425, 529). A proxy's HTML page is
summarised to its title; nothing is ever dumped whole into a message or a log, and the
whole body is redacted before it is parsed or cut.
"""

from __future__ import annotations

import email.utils
import html
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerCreditCeilingError,
    PioneerError,
    PioneerModelNotServableError,
    PioneerModelWarmingError,
    PioneerNotFoundError,
    PioneerPayloadTooLargeError,
    PioneerPaymentRequiredError,
    PioneerRateLimitError,
    PioneerServerError,
    PioneerSpendCapError,
    PioneerValidationError,
)

__all__ = [
    "BILLING_CODES",
    "SPEND_CAP_REASON",
    "Answer",
    "error_for_response",
    "is_billing_code",
    "parse_retry_after",
    "request_model",
    "summarize_body",
]

SPEND_CAP_REASON = "daily_spend_cap_exceeded"
#: Billing ``code``s of the August 2026 API (402 and 403 bodies).
BILLING_CODES = frozenset(
    {"out_of_credits", "direct_model_requires_credits", "credit_ceiling_reached", "card_required"}
)
INFERENCE_ROUTE_SUFFIX = "/inference"
_MAX_SUMMARY = 300
#: Request fields that name the model a call is about, and the statuses that may be about it.
_MODEL_FIELDS = ("model_id", "base_model")
_ABOUT_THE_MODEL = frozenset({400, 404, 409, 422, 425})
_MAX_MODEL_SHOWN = 120
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class Answer:
    """An HTTP answer as plain values: all the mapping (and the success decoding) reads of one.

    :param status: the HTTP status.
    :param headers: the headers, looked up case-insensitively (requests' and httpx's both are).
    :param content: the whole body, as read (size-capped by the transport).
    :param reason: the status line's reason phrase, shown for an empty body.
    :param encoding: the body's charset, when the answer named one (else UTF-8 is assumed).
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    content: bytes = b""
    reason: str = ""
    encoding: str | None = None

    @property
    def ok(self) -> bool:
        """A 2xx."""
        return 200 <= self.status < 300

    @classmethod
    def of(cls, response: Any) -> Answer:
        """A read ``requests.Response`` or ``httpx.Response`` (or an :class:`Answer`) as an answer."""
        if isinstance(response, Answer):
            return response
        reason = getattr(response, "reason", None) or getattr(response, "reason_phrase", None) or ""
        return cls(response.status_code, response.headers, response.content or b"", reason, response.encoding)


def parse_retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now())


def _one_line(text: str) -> str:
    # Collapsing a long (already redacted) body only to cut it wastes time: collapse a prefix that
    # is surely long enough unless the body is mostly whitespace (then the summary is shorter).
    text = _SPACE.sub(" ", text[: _MAX_SUMMARY * 4]).strip()
    return text if len(text) <= _MAX_SUMMARY else text[: _MAX_SUMMARY - 3] + "..."


def _summarize_detail(detail: Any) -> str:
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict):
                loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                msg = item.get("msg", "")
                parts.append(f"{loc}: {msg}" if loc else str(msg))
            else:
                parts.append(str(item))
        more = f" (+{len(detail) - 3} more)" if len(detail) > 3 else ""
        return "; ".join(parts) + more
    return json.dumps(detail, default=str, sort_keys=True)


def _envelope_summary(body: dict[str, Any]) -> tuple[str, Any] | None:
    """Summary and detail of a JSON error body, in any of the API's envelopes."""
    if "detail" in body:
        return _summarize_detail(body["detail"]), body["detail"]
    error = body.get("error")
    if isinstance(error, dict):  # OpenAI-compatible routes: {"error": {code, type, param, message}}
        parts = [str(error[k]) for k in ("code", "message") if error.get(k)]
        return ": ".join(parts) or json.dumps(error, sort_keys=True, default=str), body
    if "message" in body or error or body.get("code"):
        # The legacy {"error", "message"} and the billing {"code", "message", "resolution_url"}.
        parts = [str(body[k]) for k in ("error", "code", "message") if body.get(k)]
        return ": ".join(dict.fromkeys(parts)), body
    return None


def _body_text(response: Answer, redact: Callable[[str], str]) -> str:
    # Redact the WHOLE body before anything parses, summarises or cuts it: a cut made first
    # could leave most of an echoed key behind its edge, where no whole-key masker finds it.
    # Decoded directly: response.text would guess the charset of a whole (maybe huge) body first.
    if not response.content:
        return ""
    return redact(response.content.decode(response.encoding or "utf-8", errors="replace"))


def summarize_body(response: Any, redact: Callable[[str], str] = lambda s: s) -> tuple[str, Any]:
    """One line that says what the server answered, and the parsed detail (if it was JSON).

    :param response: the error answer (an :class:`Answer`, or a requests or httpx response).
    :param redact: scrubs secrets; applied to the whole body before it is parsed or cut.
    """
    response = Answer.of(response)
    text = _body_text(response, redact)
    return _summarize(text, response, _parse_json(text, response, redact) if text else None, redact)


def _parse_json(text: str, response: Answer, redact: Callable[[str], str]) -> Any:
    content_type = response.headers.get("Content-Type", "").lower()
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            # Redacted again once parsed: "\u0041pple"-style escapes hide a key from the raw
            # text's redaction and bring it back whole when the strings are decoded.
            return _redacted(safe_json.loads(text), redact)
        except (ValueError, RecursionError):  # RecursionError: _redacted walks what parsed
            return None
    return None


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    """Every string of a parsed JSON document (keys too) passed through ``redact``."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    if isinstance(value, dict):
        return {redact(k): _redacted(v, redact) for k, v in value.items()}
    return value


def _summarize(text: str, response: Answer, body: Any, redact: Callable[[str], str]) -> tuple[str, Any]:
    if not text:
        return (response.reason or "empty body", None)
    if isinstance(body, dict):
        found = _envelope_summary(body)
        if found is not None:
            return (_one_line(found[0]), found[1])
    content_type = response.headers.get("Content-Type", "").lower()
    if "html" in content_type or text.lstrip()[:1] == "<":
        title = _TITLE.search(text)
        inner = title.group(1) if title else _TAG.sub(" ", text)
        # Shown decoded (&amp; as &), so redacted again once decoded: "&#112;" hides a key's "p".
        return (_one_line(f"HTML error page: {redact(html.unescape(_TAG.sub(' ', inner)))}"), None)
    return (_one_line(text.splitlines()[0] if text.splitlines() else text), None)


def _text_errors(detail: Any) -> dict[int, str]:
    """``{index: msg}`` for the ``text`` items named by FastAPI validation ``loc``s (``["body", "text", 3]``)."""
    found: dict[int, str] = {}
    if isinstance(detail, list):
        for item in detail:
            loc = item.get("loc", []) if isinstance(item, dict) else []
            for i, part in enumerate(loc[:-1]):
                if part == "text" and isinstance(loc[i + 1], int):
                    found.setdefault(loc[i + 1], str(item.get("msg") or "invalid text"))
    return found


def _code(body: Any, response: Answer, redact: Callable[[str], str]) -> str | None:
    """The machine-readable error code: the body's ``code`` (or ``error.code``), else ``X-RateLimit-Code``."""
    code: Any = None
    if isinstance(body, dict):
        code = body.get("code")
        if code is None and isinstance(body.get("error"), dict):
            code = body["error"].get("code")
        if code is None and isinstance(body.get("detail"), dict):
            code = body["detail"].get("code")
    code = code or redact(response.headers.get("X-RateLimit-Code", ""))
    return str(code).strip()[:64] or None if code else None


def _resolution_url(body: Any) -> str | None:
    url = body.get("resolution_url") if isinstance(body, dict) else None
    if not isinstance(url, str):
        return None
    url = url.strip()
    # Shown to the user as advice: only a plain https link of sane length, never a javascript: or data: one.
    return url if url.startswith("https://") and len(url) <= 200 and " " not in url else None


def is_billing_code(code: str | None) -> bool:
    """Whether an error ``code`` is about money (credits, ceiling, card), whatever its status."""
    if not code:
        return False
    code = code.lower()
    return code in BILLING_CODES or any(word in code for word in ("credit", "card", "billing", "payment"))


def request_model(body: Any) -> tuple[str, str] | None:
    """The model a request body asks for, as ``(field, value)``: ``model_id`` (inference) or
    ``base_model`` (training, evaluation); ``None`` when it names none."""
    if isinstance(body, dict):
        for name in _MODEL_FIELDS:
            value = body.get(name)
            if isinstance(value, str) and value.strip():
                return name, value.strip()
    return None


def error_for_response(
    response: Any,
    what: str,
    redact: Callable[[str], str] = lambda s: s,
    model: tuple[str, str] | None = None,
) -> PioneerError:
    """The typed exception for an error response (either API generation, any envelope).

    :param response: the answer (status >= 400): an :class:`Answer`, or a read requests or httpx response.
    :param what: the call, e.g. ``"POST /inference"``, for the message.
    :param redact: scrubs secrets from anything the server echoed back; applied to the whole
        body before it is parsed, summarised or cut.
    :param model: the model the request asked for (:func:`request_model`): a verdict that may be
        about the model (400, 404, 409, 422, 425) names it, since the body often does not.
    """
    response = Answer.of(response)
    status = response.status
    text = _body_text(response, redact)
    body = _parse_json(text, response, redact) if text else None
    summary, detail = _summarize(text, response, body, redact)
    code = _code(body, response, redact)
    subject = ""
    if model is not None and status in _ABOUT_THE_MODEL:
        name, value = model[0], redact(model[1])
        if value not in summary:
            shown = value if len(value) <= _MAX_MODEL_SHOWN else value[: _MAX_MODEL_SHOWN - 3] + "..."
            subject = f" for {name} {shown!r}"
    message = f"Pioneer {what} failed with HTTP {status}{subject}: {summary}"
    kwargs: dict[str, Any] = {
        "status": status,
        "detail": detail,
        "retry_after": parse_retry_after(response.headers.get("Retry-After")),
        "code": code,
        "resolution_url": _resolution_url(body),
    }
    inference = what.endswith(INFERENCE_ROUTE_SUFFIX)
    reason = response.headers.get("X-RateLimit-Reason", "").strip().lower()
    if status == 401:
        return PioneerAuthError(message, **kwargs)
    if status == 402:
        return PioneerPaymentRequiredError(message, **kwargs)
    if status == 403:
        # The newer API answers a credit ceiling with 403 + a billing code: money, not the key.
        if is_billing_code(code):
            return PioneerCreditCeilingError(message, **kwargs)
        return PioneerAuthError(message, **kwargs)
    if status == 404:
        if inference:
            message = message.rstrip() + ("" if message.rstrip().endswith((".", "?", "!")) else ".")
            message += " Check the model_id (is the model deployed?)."
        return PioneerNotFoundError(message, **kwargs)
    if status == 409 and inference:
        return PioneerModelNotServableError(message, **kwargs)
    if status == 413:
        return PioneerPayloadTooLargeError(message, **kwargs)
    if status in (400, 422):
        return PioneerValidationError(message, text_errors=_text_errors(detail), **kwargs)
    if status == 425:
        return PioneerModelWarmingError(message, **kwargs)
    if status == 429:
        if SPEND_CAP_REASON in (reason, code):
            return PioneerSpendCapError(message, **kwargs)
        if is_billing_code(code):
            return PioneerCreditCeilingError(message, **kwargs)
        scope = redact(response.headers.get("X-RateLimit-Scope", "")) or (
            body.get("scope") if isinstance(body, dict) else None
        )
        return PioneerRateLimitError(message, scope=str(scope)[:64] if scope else None, **kwargs)
    if status >= 500 or status == 408:
        return PioneerServerError(message, **kwargs)
    return PioneerError(message, **kwargs)
