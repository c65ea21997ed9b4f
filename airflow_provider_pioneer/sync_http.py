"""The sync client's transport: one HTTP exchange over requests, bounded by the call's deadline.

What only requests needs: the pooled session, the streamed body read with the size cap and the
deadline (a server trickling its answer is cut off at the deadline, plus at most one ``timeout``),
and requests' exceptions as the retry policy's :class:`~airflow_provider_pioneer.retry.Failure`
and, once the retries are over, as a :class:`~airflow_provider_pioneer.exceptions.PioneerConnectionError`.
Headers, decoding and errors are :mod:`~airflow_provider_pioneer.http_core`'s. The client's
running totals of its exchanges (:class:`ClientStats`) are kept here too.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests

from airflow_provider_pioneer.exceptions import PioneerConnectionError
from airflow_provider_pioneer.http_core import MAX_BODY_BYTES, READ_CHUNK, Answer, BodyCap
from airflow_provider_pioneer.http_deadline import DeadlineAdapter, bounded_by
from airflow_provider_pioneer.retry import CallRecord, Failure

__all__ = ["ClientStats", "DeadlinePassed", "connection_error", "exchange", "failure_of", "new_session"]


class DeadlinePassed(requests.ReadTimeout):
    """The call's deadline passed while the answer was still arriving."""


@dataclass
class ClientStats:
    """Running totals for one client, safe to read from any thread (take a :meth:`snapshot`)."""

    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, *, status: int | None = None, retry: bool = False) -> None:
        with self._lock:
            if retry:
                self.retries += 1
                return
            self.attempts += 1
            if status is not None:
                self.statuses[status] += 1
                if status == 429:
                    self.rate_limited += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "attempts": self.attempts,
                "retries": self.retries,
                "rate_limited": self.rate_limited,
                "statuses": dict(self.statuses),
            }


def new_session(pool_size: int) -> requests.Session:
    """A session with ``pool_size`` pooled connections, no redirects' retries, deadline-aware."""
    session = requests.Session()
    adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def exchange(
    session: requests.Session,
    method: str,
    url: str,
    *,
    body: Any,
    params: dict[str, Any] | None,
    headers: dict[str, str],
    timeout: float,
    call: CallRecord,
) -> Answer:
    """Send one request and read its whole answer within ``call``'s deadline and the size cap.

    :raises requests.RequestException: no whole answer (:class:`DeadlinePassed` once the deadline passed).
    """
    remaining = max(0.1, call.deadline - time.monotonic())
    try:
        with bounded_by(call.deadline):  # the headers' wait too, not only the body's
            response = session.request(
                method,
                url,
                json=body,
                params=params,
                headers=headers,
                timeout=(min(10.0, timeout, remaining), min(timeout, remaining)),
                allow_redirects=False,
                stream=True,
            )
        content = _read_body(response, call)
    except requests.RequestException as exc:
        if time.monotonic() >= call.deadline and not isinstance(exc, DeadlinePassed):
            # Cut by the headers' watchdog, or failed as the deadline passed: either way the
            # deadline decides, and no retry may start after it.
            raise DeadlinePassed(f"deadline passed: {type(exc).__name__}") from None
        raise
    return Answer(response.status_code, response.headers, content, response.reason or "", response.encoding)


def _read_body(response: requests.Response, call: CallRecord) -> bytes:
    """The whole body, read within the call's deadline (plus one read timeout at most) and size cap.

    ``read1`` returns whatever arrived (after at most one read timeout), so a server trickling
    its answer a byte at a time cannot hold the call past its deadline.
    """
    body = BodyCap(call.what, MAX_BODY_BYTES)
    try:
        while chunk := response.raw.read1(READ_CHUNK, decode_content=True):
            body.add(chunk)
            if time.monotonic() > call.deadline:
                raise DeadlinePassed(f"deadline passed after {body.size} bytes of the answer")
    except (OSError, ValueError) as exc:  # urllib3's protocol and read errors, as requests raises them
        if isinstance(exc, requests.RequestException):
            raise
        raise requests.ConnectionError(f"the answer broke off: {type(exc).__name__}") from None
    finally:
        response.close()
    return body.content()


def failure_of(exc: requests.RequestException) -> Failure:
    """A requests exception as the retry policy judges it."""
    if isinstance(exc, DeadlinePassed):
        return Failure.DEADLINE
    if isinstance(exc, requests.ReadTimeout):
        return Failure.READ_TIMEOUT
    if isinstance(exc, requests.ConnectionError | requests.Timeout):
        return Failure.CONNECT
    return Failure.OTHER


def connection_error(
    exc: requests.RequestException, call: CallRecord, *, base_url: str, timeout: float, deadline: float
) -> PioneerConnectionError:
    """The error a call ends with when its last attempt got no answer."""
    if isinstance(exc, DeadlinePassed):
        return PioneerConnectionError(
            f"Pioneer {call.what}: the answer was still arriving when the call's {deadline:g} s "
            f"deadline passed{call.tries()}. Raise the connection extra 'deadline' or try later."
        )
    if isinstance(exc, requests.Timeout):
        return PioneerConnectionError(
            f"Pioneer {call.what} timed out after {timeout:g} s{call.tries()}. "
            "Raise the connection extra 'timeout' or try later."
        )
    return PioneerConnectionError(
        f"Pioneer {call.what}: could not reach {base_url}{call.tries()} "
        f"({type(exc).__name__}). Check the host and the network."
    )
