"""What the sync client (requests) and the triggers' async reader (httpx) share, transport-neutral.

Each transport sends and reads; everything about what it sends and how an answer is judged is
here, once: the headers (:func:`request_headers`: the key in ``X-API-Key`` or Bearer, JSON, the
provider's ``User-Agent``), the body cap (:class:`BodyCap`, refusing an answer past
:data:`MAX_BODY_BYTES` while it arrives), and :func:`decode_answer`: a 2xx's JSON document, a 3xx
refused (redirects are never followed, so the key never goes to another host), and every other
status through the error mapping (:mod:`~airflow_provider_pioneer.http_errors`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_pioneer import __version__, safe_json
from airflow_provider_pioneer.credentials import auth_header
from airflow_provider_pioneer.exceptions import PioneerRedirectError, PioneerResponseError
from airflow_provider_pioneer.http_errors import Answer, error_for_response

__all__ = [
    "MAX_BODY_BYTES",
    "READ_CHUNK",
    "Answer",
    "BodyCap",
    "body_too_large",
    "decode_answer",
    "request_headers",
    "result_problem",
]

#: Largest response body read; a bigger one is refused rather than filling memory.
MAX_BODY_BYTES = 256 * 1024 * 1024
#: Bytes asked for per read of a body.
READ_CHUNK = 64 * 1024


def request_headers(auth_scheme: str, api_key: str) -> dict[str, str]:
    """The headers of every API request: JSON, the provider's ``User-Agent`` and the key."""
    return {
        "Accept": "application/json",
        "User-Agent": f"airflow-provider-pioneer/{__version__}",
        **auth_header(auth_scheme, api_key),
    }


def body_too_large(what: str, limit: int) -> PioneerResponseError:
    """The error for an answer past ``limit`` bytes."""
    return PioneerResponseError(
        f"Pioneer {what} answered more than {limit // 2**20} MiB; refused. "
        "Check the connection's host: this is not Pioneer's API."
    )


class BodyCap:
    """An answer's body, collected chunk by chunk as it arrives and refused past ``limit`` bytes.

    :param what: the call, e.g. ``"GET /felix/training-jobs/j1"``, for the message.
    :param limit: the most bytes kept.
    """

    def __init__(self, what: str, limit: int = MAX_BODY_BYTES) -> None:
        self.what = what
        self.limit = limit
        self.size = 0
        self._chunks: list[bytes] = []

    def add(self, chunk: bytes) -> None:
        """Keep ``chunk``; :class:`PioneerResponseError` once the body passes the limit."""
        self.size += len(chunk)
        if self.size > self.limit:
            raise body_too_large(self.what, self.limit)
        self._chunks.append(chunk)

    def content(self) -> bytes:
        """The body so far."""
        return b"".join(self._chunks)


def decode_answer(
    answer: Answer,
    what: str,
    redact: Callable[[str], str],
    model: tuple[str, str] | None = None,
) -> Any:
    """The JSON document of a 2xx answer (``{}`` for an empty body); a typed error for any other.

    :param answer: the whole answer.
    :param what: the call, for messages.
    :param redact: scrubs keys from anything the server echoed.
    :param model: the model the request named (see :func:`~airflow_provider_pioneer.http_errors.request_model`).
    :raises PioneerResponseError: a 2xx that is not JSON.
    :raises PioneerRedirectError: a 3xx (never followed).
    :raises PioneerError: the mapped error of a 4xx/5xx.
    """
    status = answer.status
    if answer.ok:
        if not answer.content:
            return {}
        try:
            return safe_json.loads(answer.content)
        except ValueError:
            raise PioneerResponseError(
                f"Pioneer {what} answered HTTP {status} with a body that is not JSON."
            ) from None
    if 300 <= status < 400:
        target = urlsplit(answer.headers.get("Location", "")).netloc or "another location"
        raise PioneerRedirectError(
            f"Pioneer {what} was redirected (HTTP {status}) to {redact(target)}; "
            "redirects are not followed so the API key is never sent elsewhere. "
            "Set the connection host to the final base URL.",
            status=status,
        )
    raise error_for_response(answer, what, redact, model)


def result_problem(entry: Any, wants_entities: bool) -> str | None:
    """Why one entry of an inference ``result`` is not a per-text result, or ``None`` when it is one.

    :param wants_entities: the request's schema asked for entities, so the entry must carry them
        (``{}`` is then a malformed answer, not "no entity found", which is ``{label: []}``).
    """
    if not isinstance(entry, dict):
        return "is null" if entry is None else f"is a {type(entry).__name__}, not an object"
    if wants_entities and "entities" not in entry:
        return "has no 'entities' (expected {label: [entity, ...]})"
    entities = entry.get("entities")
    if "entities" in entry and not (
        isinstance(entities, dict) and all(isinstance(v, list) for v in entities.values())
    ):
        return "has malformed 'entities' (expected {label: [entity, ...]})"
    return None
