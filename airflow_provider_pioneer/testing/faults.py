"""Injected faults of the emulator: their description (:class:`Fault`), the checks of
:meth:`EmulatorState.inject`'s arguments, and the pure builders of faulty answers
(echoed keys, corrupted ``result`` lists). The HTTP layer (``transport.py``) plays them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "BAD_RESULTS",
    "ECHO_ENVELOPES",
    "FAULT_KINDS",
    "REASONS",
    "Fault",
    "corrupt_results",
    "echo_body",
    "html_error_page",
    "validate",
]

#: Values of ``fault=`` for :meth:`EmulatorState.inject` (``status=`` alone covers plain error answers).
FAULT_KINDS = ("drop", "lose_response", "redirect", "trickle", "echo_key", "bad_results")
#: Where ``fault="echo_key"`` puts the key: ``{"detail": ...}``, ``{"error": ..., "message": ...}``,
#: an HTML page (title and body) or a plain-text body.
ECHO_ENVELOPES = ("detail", "message", "html", "text")
#: What ``fault="bad_results"`` puts at the chosen indices of a 200's ``result``.
BAD_RESULTS = ("null", "string", "entities_null", "no_entities", "missing")

REASONS = {
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    409: "Conflict", 413: "Request Entity Too Large", 422: "Unprocessable Entity", 425: "Too Early",
    429: "Too Many Requests", 451: "Unavailable For Legal Reasons", 500: "Internal Server Error",
    502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout", 529: "Site Overloaded",
}  # fmt: skip
_HTML_ERROR = (
    "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n<center><h1>{status} {reason}"
    "</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
# Filler around an echoed key: plain words, no hex run, so no piece of a key appears by chance.
_FILLER = "Invalid API key provided, check the key sent: "


def html_error_page(status: int) -> str:
    """The HTML error page nginx sends for ``status`` (e.g. 413 Request Entity Too Large)."""
    return _HTML_ERROR.format(status=status, reason=REASONS.get(status, "Error"))


@dataclass
class Fault:
    """An injected fault; see :meth:`EmulatorState.inject` for the meaning of each field."""

    id: str
    status: int | None
    kind: str | None
    rate: float | None
    times: int | None
    after: int
    path: str | None
    headers: dict[str, str]
    body: Any
    content_type: str | None
    trickle_bytes: int = 1
    trickle_interval: float = 1.0
    envelope: str = "detail"
    body_size: int | None = None
    offset: int = 0
    indices: list[int] | None = None
    bad: str = "null"
    seen: int = 0
    fired: int = 0

    def matches(self, path: str) -> bool:
        return path == self.path if self.path is not None else path != "/health"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "fault": self.kind, "rate": self.rate,
            "times": self.times, "after": self.after, "path": self.path, "fired": self.fired,
        }  # fmt: skip


def _echo_overhead(envelope: str, status: int) -> int:
    return len(_echo_skeleton(envelope, status, "", ""))


def _echo_skeleton(envelope: str, status: int, first: str, second: str) -> str:
    reason = REASONS.get(status, "Error")
    if envelope == "detail":
        return f'{{"detail": "{first}"}}'
    if envelope == "message":
        return f'{{"error": "{reason.lower().replace(" ", "_")}", "message": "{first}"}}'
    if envelope == "html":
        return (
            f"<html><head><title>{first}</title></head><body><h1>{status} {reason}</h1>"
            f"<p>{second}</p></body></html>"
        )
    return first


def validate(
    status: int | None,
    fault: str | None,
    rate: float | None,
    times: int | None,
    headers: dict[str, str] | None,
    path: str | None,
    trickle_bytes: int,
    trickle_interval: float,
    envelope: str,
    body_size: int | None,
    indices: list[int] | None,
    bad: str,
) -> None:
    """Refuse arguments of :meth:`EmulatorState.inject` that cannot describe a fault (``ValueError``)."""
    if fault is None and status is None:
        raise ValueError("give status= or fault=")
    if fault is not None and fault not in FAULT_KINDS:
        raise ValueError(f"fault must be one of {FAULT_KINDS}, not {fault!r}")
    if status is not None and fault not in (None, "trickle", "echo_key"):
        raise ValueError(f'fault="{fault}" takes no status= (only "trickle" and "echo_key" do)')
    if fault == "redirect" and not (headers and "Location" in headers):
        raise ValueError('fault="redirect" needs headers={"Location": ...}')
    if rate is not None and not 0.0 <= rate <= 1.0:
        raise ValueError("rate must be within 0..1")
    if times is not None and times < 0:
        raise ValueError("times must be >= 0")
    if trickle_bytes < 1 or trickle_interval < 0:
        raise ValueError("trickle_bytes must be >= 1 and trickle_interval >= 0")
    if fault == "echo_key":
        if envelope not in ECHO_ENVELOPES:
            raise ValueError(f"envelope must be one of {ECHO_ENVELOPES}, not {envelope!r}")
        least = _echo_overhead(envelope, status or 401) + (2 if envelope == "html" else 1)
        if body_size is not None and body_size < least:
            raise ValueError(f"body_size of a {envelope!r} echo must be at least {least} bytes")
    if fault == "bad_results":
        if path != "/inference":
            raise ValueError('fault="bad_results" only applies to path="/inference"')
        if bad not in BAD_RESULTS:
            raise ValueError(f"bad must be one of {BAD_RESULTS}, not {bad!r}")
        if indices is not None and not all(isinstance(i, int) for i in indices):
            raise ValueError("indices must be a list of integers")


def _text_with_key(key: str, length: int, offset: int) -> str:
    """``length`` characters of filler with ``key`` written from ``offset`` on (cut at both ends)."""
    chars = list((_FILLER * (length // len(_FILLER) + 1))[:length])
    for i, ch in enumerate(key):
        if 0 <= offset + i < length:
            chars[offset + i] = ch
    return "".join(chars)


def echo_body(key: str, status: int, envelope: str, body_size: int | None, offset: int) -> tuple[bytes, str]:
    """Body and content type of an error answer that echoes ``key``.

    The key starts ``offset`` characters into the echoed text (the ``detail`` or ``message``
    string, the HTML title and paragraph, or the whole text body); a negative offset or a text
    too short cuts it, so only a piece of the key appears. ``body_size`` is the exact size of the
    body in bytes (None: just long enough for the whole key).
    """
    overhead = _echo_overhead(envelope, status)
    parts = 2 if envelope == "html" else 1
    room = (body_size - overhead) if body_size is not None else parts * max(0, offset + len(key))
    first_len = room // parts
    first = _text_with_key(key, first_len, offset)
    second = _text_with_key(key, room - first_len, offset) if parts == 2 else ""
    content_type = {
        "detail": "application/json", "message": "application/json",
        "html": "text/html; charset=utf-8", "text": "text/plain; charset=utf-8",
    }[envelope]  # fmt: skip
    return _echo_skeleton(envelope, status, first, second).encode(), content_type


def _bad_entry(bad: str) -> Any:
    return {"null": None, "string": "error: could not process this text", "entities_null": {"entities": None},
            "no_entities": {}}[bad]  # fmt: skip


def corrupt_results(results: list[Any], indices: list[int] | None, bad: str) -> list[Any]:
    """``results`` with the entries at ``indices`` (None: all; negative counts from the end)
    replaced by ``bad`` (``"missing"`` removes them, so the list gets shorter)."""
    n = len(results)
    chosen = set(range(n)) if indices is None else {i % n for i in indices if -n <= i < n}
    if bad == "missing":
        return [r for i, r in enumerate(results) if i not in chosen]
    return [_bad_entry(bad) if i in chosen else r for i, r in enumerate(results)]
