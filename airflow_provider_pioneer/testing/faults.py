"""Injected faults of the emulator: their parameters (:class:`FaultSpec`, the one list that the
client, the admin route and the state share), an injected :class:`Fault`, the checks of a spec
and the pure builders of faulty answers (echoed keys, corrupted ``result`` lists). The HTTP layer
(``transport.py``) plays them.
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
    "FaultSpec",
    "corrupt_results",
    "echo_body",
    "html_error_page",
    "validate",
]

#: Values of ``fault=`` (:class:`FaultSpec`) (``status=`` alone covers plain error answers).
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
class FaultSpec:
    """What to inject: the parameters of ``EmulatorControl.inject`` (and of its admin call), written once.

    Give ``status`` alone (answer that status) or a ``fault`` kind:

    - ``"drop"``: close the connection before processing;
    - ``"lose_response"``: process fully (bill), then close without answering;
    - ``"redirect"``: 307 with ``headers["Location"]``;
    - ``"trickle"``: send the answer's body ``trickle_bytes`` at a time, ``trickle_interval``
      seconds apart (headers at once). Without ``status`` the request is processed and its
      real answer (success or error) is trickled; with ``status`` that error answer is;
    - ``"echo_key"``: an error answer (``status``, default 401) whose body echoes the request's
      key (its ``X-API-Key``, else its ``Authorization: Bearer`` value) ``offset`` characters
      into the text of ``envelope``: ``"detail"`` (``{"detail": text}``), ``"message"``
      (``{"error": ..., "message": text}``), ``"html"`` (the text in the page's title and in
      its body) or ``"text"`` (text/plain). ``body_size`` is the body's exact size in bytes
      (None: just long enough for the whole key); a negative offset or a short body leaves
      only a piece of the key;
    - ``"bad_results"``: a normal, billed 200 of ``/inference`` whose ``result`` entries at
      ``indices`` (None: all; negative from the end) are replaced by ``bad``: ``"null"``,
      ``"string"``, ``"entities_null"`` (``{"entities": null}``), ``"no_entities"`` (``{}``)
      or ``"missing"`` (removed: the list gets shorter; for a single text, no ``result``).

    ``rate`` is the probability per matching request (seeded), ``times`` caps how often it
    fires, ``after`` skips the first N matching requests. ``path`` None matches every path but
    ``/health`` (the admin API is never faulted). Faults are tried in order; the first that
    fires wins and the later ones do not see that request. Request faults are evaluated before
    authentication; a ``lose_response`` fault only sees successful (2xx) answers, so its
    ``after`` counts successes. ``headers`` are added to the answer; ``body`` replaces the
    default ``{"detail": ...}`` (with ``content_type`` "text/html" and no body, a proxy-style
    HTML page is sent).
    """

    # A new fault's parameter is a field here: EmulatorControl.inject, its admin route and
    # EmulatorState.inject all take it from this class. Its check goes in validate(), its answer
    # in transport.py.
    status: int | None = None
    fault: str | None = None
    rate: float | None = None
    times: int | None = None
    after: int = 0
    path: str | None = "/inference"
    headers: dict[str, str] | None = None
    body: Any = None
    content_type: str | None = None
    trickle_bytes: int = 1
    trickle_interval: float = 1.0
    envelope: str = "detail"
    body_size: int | None = None
    offset: int = 0
    indices: list[int] | None = None
    bad: str = "null"


@dataclass
class Fault(FaultSpec):
    """An injected fault: its :class:`FaultSpec`, its id and how often it was seen and fired."""

    id: str = ""
    seen: int = 0
    fired: int = 0

    @property
    def kind(self) -> str | None:
        return self.fault

    def matches(self, path: str) -> bool:
        return path == self.path if self.path is not None else path != "/health"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "fault": self.fault, "rate": self.rate,
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


def validate(spec: FaultSpec) -> None:
    """Refuse a :class:`FaultSpec` that cannot describe a fault (``ValueError``, saying what to give)."""
    status, fault, rate, times, path = spec.status, spec.fault, spec.rate, spec.times, spec.path
    headers, envelope, body_size, indices, bad = (
        spec.headers,
        spec.envelope,
        spec.body_size,
        spec.indices,
        spec.bad,
    )
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
    if spec.trickle_bytes < 1 or spec.trickle_interval < 0:
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
