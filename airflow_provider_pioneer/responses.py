"""Turn Pioneer's HTTP error responses into typed exceptions.

Both error envelopes of the API are understood: FastAPI's ``{"detail": ...}``
(a string, an object, or a list of validation errors) and the older
``{"error": ..., "message": ...}``. A proxy's HTML page is summarised to its
title; nothing is ever dumped whole into a message or a log.
"""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Callable
from typing import Any

import requests

from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerError,
    PioneerNotFoundError,
    PioneerPaymentRequiredError,
    PioneerRateLimitError,
    PioneerServerError,
    PioneerSpendCapError,
    PioneerValidationError,
)

__all__ = ["SPEND_CAP_REASON", "error_for_response", "parse_retry_after", "summarize_body"]

SPEND_CAP_REASON = "daily_spend_cap_exceeded"
_MAX_SUMMARY = 300
_TITLE = re.compile(r"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_TAG = re.compile(r"<[^>]+>")
_SPACE = re.compile(r"\s+")


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
    text = _SPACE.sub(" ", text).strip()
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


def summarize_body(response: requests.Response) -> tuple[str, Any]:
    """One line that says what the server answered, and the parsed detail (if it was JSON)."""
    content_type = response.headers.get("Content-Type", "").lower()
    text = response.text if response.content else ""
    if not text:
        return (response.reason or "empty body", None)
    if "json" in content_type or text.lstrip()[:1] in ("{", "["):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            if "detail" in body:
                return (_one_line(_summarize_detail(body["detail"])), body["detail"])
            if "message" in body or "error" in body:
                parts = [str(body[k]) for k in ("error", "message") if body.get(k)]
                return (_one_line(": ".join(parts)), body)
    if "html" in content_type or text.lstrip()[:1] == "<":
        title = _TITLE.search(text)
        inner = title.group(1) if title else _TAG.sub(" ", text)
        return (_one_line(f"HTML error page: {_TAG.sub(' ', inner)}"), None)
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


def error_for_response(
    response: requests.Response, what: str, redact: Callable[[str], str] = lambda s: s
) -> PioneerError:
    """The typed exception for an error response.

    :param response: the HTTP response (status >= 400).
    :param what: the call, e.g. ``"POST /inference"``, for the message.
    :param redact: scrubs secrets from anything the server echoed back.
    """
    status = response.status_code
    summary, detail = summarize_body(response)
    summary = redact(summary)
    if detail is not None:  # the detail travels with the exception (and into logs): scrub it too
        detail = json.loads(redact(json.dumps(detail, default=str)))
    message = f"Pioneer {what} failed with HTTP {status}: {summary}"
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
    kwargs: dict[str, Any] = {"status": status, "detail": detail, "retry_after": retry_after}
    if status in (401, 403):
        return PioneerAuthError(message, **kwargs)
    if status == 402:
        return PioneerPaymentRequiredError(message, **kwargs)
    if status == 404:
        if what.endswith("/inference"):
            message += " Check the model_id (is the model deployed?)."
        return PioneerNotFoundError(message, **kwargs)
    if status in (400, 422):
        return PioneerValidationError(message, text_errors=_text_errors(detail), **kwargs)
    if status == 429:
        if response.headers.get("X-RateLimit-Reason", "").strip().lower() == SPEND_CAP_REASON:
            return PioneerSpendCapError(message, **kwargs)
        return PioneerRateLimitError(message, **kwargs)
    if status >= 500:
        return PioneerServerError(message, **kwargs)
    return PioneerError(message, **kwargs)
