"""PioneerClient: Pioneer's HTTP protocol, with retries. Knows nothing of Airflow's machinery.

It does import Airflow once, for one name: its errors (``exceptions.py``) subclass Airflow's
``AirflowException`` (DESIGN: ``PioneerError`` is one), so that a task failing on one is an
Airflow failure with its message, and ``except AirflowException`` in a user's DAG catches it.
That costs the first import about 2 s (``airflow.sdk``); nothing else here touches Airflow: no
connection, Variable, log handler or configuration (the hook brings those).

Everything about talking to the API lives here: base-URL policy, the key header
(``X-API-Key``, or ``Authorization: Bearer``), no redirects, pooled connections,
typed errors, and the retry policy, which the exception classes carry
(:attr:`PioneerError.retryable`):

* retried: connection errors, 500/502/503/504/529 (and a proxy's 408), 429 unless it is
  a billing answer, and 425 (a warming model: waited out within a warm-up budget,
  without spending ``max_retries``);
* never retried: 401 (but see ``refresh_key``), 402, 403, 404, 409, 400/413/422, the
  spend cap, and ``POST /create-api-key`` (not idempotent: a lost answer retried would
  make a second key);
* a read timeout on ``/inference`` may already have been billed: retried once at most;
* waits: full-jitter exponential backoff (base 1 s, cap 20 s); a ``Retry-After``
  (seconds or HTTP date, capped) closes a gate shared by every thread using
  this client, so one 429 slows all of them;
* a total deadline per call, body reading included (a server trickling its answer is
  cut off at the deadline, plus at most one ``timeout``), after which no retry starts.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests
from tenacity import RetryCallState, Retrying, retry_if_exception

from airflow_provider_pioneer import __version__, safe_json
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerBillingError,
    PioneerConfigurationError,
    PioneerConnectionError,
    PioneerError,
    PioneerModelWarmingError,
    PioneerRateLimitError,
    PioneerRedirectError,
    PioneerResponseError,
)
from airflow_provider_pioneer.http_deadline import DeadlineAdapter, bounded_by
from airflow_provider_pioneer.key_api import KeyManagement
from airflow_provider_pioneer.pacing import Pacer
from airflow_provider_pioneer.redaction import Redactor
from airflow_provider_pioneer.responses import error_for_response, request_model, result_problem
from airflow_provider_pioneer.urls import (
    CREATE_API_KEY,
    DEFAULT_BASE_URL,
    INFERENCE,
    LIST_MODELS,
    Route,
    validate_base_url,
)

__all__ = [
    "AUTH_SCHEMES",
    "DEFAULT_BASE_URL",
    "ClientStats",
    "PioneerClient",
    "check_api_key",
    "validate_base_url",
]

log = logging.getLogger(__name__)

#: How the key is sent: ``X-API-Key: <key>`` (the default) or ``Authorization: Bearer <key>``.
AUTH_SCHEMES = ("x-api-key", "bearer")
#: Largest response body read; a bigger one is refused rather than filling memory.
MAX_BODY_BYTES = 256 * 1024 * 1024
_READ_CHUNK = 64 * 1024
#: Wait after a 425 that names no Retry-After.
_DEFAULT_WARMUP_WAIT = 5.0


def body_too_large(what: str, limit: int) -> PioneerResponseError:
    """The error for an answer past ``limit`` bytes (the sync client's and the triggers' reader's)."""
    return PioneerResponseError(
        f"Pioneer {what} answered more than {limit // 2**20} MiB; refused. "
        "Check the connection's host: this is not Pioneer's API."
    )


def check_api_key(api_key: str, where: str = "the connection") -> str:
    """The key as it can be sent: surrounding whitespace stripped; refused if it cannot be a header value.

    :param api_key: the key as configured.
    :param where: where it came from, for the message (never the key itself).
    :raises PioneerConfigurationError: for an empty key or one with spaces, control or non-ASCII characters.
    """
    key = (api_key or "").strip()
    if not key:
        raise PioneerConfigurationError(
            f"No Pioneer API key in {where}: set the connection's API key field (or its key Variable)."
        )
    if not all("!" <= ch <= "~" for ch in key):
        raise PioneerConfigurationError(
            f"The Pioneer API key in {where} contains spaces, control or non-ASCII characters, which an "
            "HTTP header cannot carry (a paste from a document?). Paste the key again as plain text."
        )
    return key


class _DeadlinePassed(requests.ReadTimeout):
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


class _CallState:
    """What one logical call has seen across its attempts."""

    def __init__(
        self, route: Route, deadline: float, max_retries: int, headers: dict[str, str] | None = None
    ) -> None:
        self.route = route
        self.headers = dict(headers or {})
        self.what = str(route)
        self.deadline = deadline
        self.max_retries = max_retries
        self.retries = 0  # retries spent from max_retries (a warming model's waits are not)
        self.read_timeouts = 0
        self.key_refreshed = False
        self.model: tuple[str, str] | None = None  # the model the body asks for, named in errors


class PioneerClient:
    """HTTP client for the Pioneer API.

    :param base_url: API root, e.g. ``https://api.pioneer.ai`` (see :func:`validate_base_url`).
    :param api_key: the key; never logged or shown (surrounding whitespace is stripped).
    :param timeout: seconds to wait for each response.
    :param max_retries: retries after the first attempt, for retryable failures.
    :param deadline: seconds one call may take in total, retries and waits included.
    :param pool_size: pooled connections kept open (size it to the threads in use).
    :param allow_insecure_http: allow ``http://`` to a non-loopback host.
    :param pacer: shared pacing (``Retry-After`` gate, steady rate); one is created if omitted. Retry
        backoffs sleep through it too (``pacer.sleep``), so a pacer that a run can stop ends them.
    :param refresh_key: called once after a 401; returning a different key retries with it
        (how a key rotated mid-run is picked up).
    :param backoff_base: first backoff ceiling, seconds.
    :param backoff_cap: largest backoff ceiling, seconds.
    :param max_retry_after: longest ``Retry-After`` obeyed, seconds (a server asking for more is capped).
    :param rng: random source for jitter (seed it in tests).
    :param sleep: how to wait between attempts (default: the pacer's ``sleep``).
    :param auth_scheme: ``"x-api-key"`` (default) or ``"bearer"`` (``Authorization: Bearer <key>``).
    :param warmup_timeout: seconds this client waits, in all, for warming models (425) to come up.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 60.0,
        max_retries: int = 5,
        deadline: float = 600.0,
        pool_size: int = 10,
        allow_insecure_http: bool = False,
        pacer: Pacer | None = None,
        refresh_key: Callable[[], str | None] | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 20.0,
        max_retry_after: float = 120.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] | None = None,
        auth_scheme: str = "x-api-key",
        warmup_timeout: float = 600.0,
    ) -> None:
        self._redactor = Redactor([api_key] if api_key else [])
        api_key = check_api_key(api_key)
        if max_retries < 0 or timeout <= 0 or deadline <= 0 or warmup_timeout < 0:
            raise PioneerConfigurationError(
                "timeout and deadline must be positive, max_retries and warmup_timeout >= 0."
            )
        if auth_scheme.lower() not in AUTH_SCHEMES:
            raise PioneerConfigurationError(
                f"auth_scheme must be one of {', '.join(AUTH_SCHEMES)}, not {auth_scheme!r}."
            )
        self.base_url = validate_base_url(base_url, allow_insecure_http=allow_insecure_http)
        self.auth_scheme = auth_scheme.lower()
        self.warmup_timeout = float(warmup_timeout)
        self._warming_since: float | None = None
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.deadline = float(deadline)
        self.pacer = pacer or Pacer()
        self.stats = ClientStats()
        self._refresh_key = refresh_key
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._max_retry_after = max_retry_after
        self._rng = rng or random.Random()
        self._sleep = sleep or self.pacer.sleep
        self._key_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._api_key = api_key
        self._redactor.add(api_key)
        self._keys = KeyManagement(self._call)
        self._session = requests.Session()
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self._session.headers.update(
            {"Accept": "application/json", "User-Agent": f"airflow-provider-pioneer/{__version__}"}
        )

    def __repr__(self) -> str:
        return f"PioneerClient(base_url={self.base_url!r})"

    # -- public API -------------------------------------------------------------------------------

    def infer(
        self,
        texts: str | list[str],
        schema: dict[str, Any] | list[Any] | None = None,
        model_id: str = "",
        **options: Any,
    ) -> dict[str, Any]:
        """``POST /inference``. Returns the response document; ``result`` is a list when ``texts`` is.

        :param texts: one text, or a list of texts (batch inference).
        :param schema: ``{"entities": [...]}`` and friends.
        :param model_id: a base model id or a training job id.
        :param options: ``threshold``, ``include_confidence``, ``include_spans``, ``store``, ``project_id``.
        """
        if not model_id:
            raise PioneerConfigurationError("model_id is required, e.g. 'fastino/gliner2-base-v1'.")
        body: dict[str, Any] = {"model_id": model_id, "text": texts}
        if schema is not None:
            body["schema"] = schema
        body.update({k: v for k, v in options.items() if v is not None})
        doc = self._call(INFERENCE, body)
        result = doc.get("result") if isinstance(doc, dict) else None
        if isinstance(texts, list) and not (isinstance(result, list) and len(result) == len(texts)):
            raise PioneerResponseError(
                f"Pioneer {INFERENCE} answered {type(result).__name__} for a batch of {len(texts)} texts; "
                "expected one result per text."
            )
        entries: list[Any] = result if isinstance(result, list) and isinstance(texts, list) else [result]
        # The result's shape follows the schema ("Shape depends on the schema and task"): only a
        # request that asked for entities can say a result without them is malformed.
        wants_entities = isinstance(schema, list) or (isinstance(schema, dict) and "entities" in schema)
        for index, entry in enumerate(entries):
            problem = result_problem(entry, wants_entities)
            if problem:
                where = f"result {index} of {len(texts)}" if isinstance(texts, list) else "the result"
                raise PioneerResponseError(f"Pioneer {INFERENCE} answered HTTP 200 but {where} {problem}.")
        return doc

    def create_api_key(self, name: str) -> dict[str, Any]:
        """``POST /create-api-key``: returns ``{key, name, created_at, ...}``; the key is shown only now."""
        # Never retried: if the server created the key and the answer was lost, a retry would make a
        # second key under the same name (and count twice against the 50-per-hour limit).
        doc = self._call(CREATE_API_KEY, {"name": name}, max_retries=0)
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str) or not doc["key"]:
            raise PioneerResponseError(f"Pioneer {CREATE_API_KEY} answered without a key.")
        self._redactor.add(doc["key"])
        return doc

    def list_api_keys(self) -> list[dict[str, Any]]:
        """``GET /list-api-keys``: the account's key records (never key values), every page of them."""
        return self._keys.list_all()

    def list_api_keys_page(
        self, params: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of ``GET /list-api-keys`` and the query of the next (``None`` after the last)."""
        return self._keys.list_page(params)

    def delete_api_key(self, name: str, key_id: str | None = None) -> dict[str, Any]:
        """``DELETE /delete-api-key``: revoke the key called ``name`` (immediate, permanent).

        :param key_id: the key's ``id``, used if the server refuses revocation by name (HTTP 422).
        """
        return self._keys.revoke(name, key_id)

    def list_base_models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the model catalogue, every page of it."""
        models: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        for _ in range(1000):  # a bound, in case a server never says has_more=false
            doc = self._call(LIST_MODELS, params=params)
            page = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(page, list):
                raise PioneerResponseError(f"Pioneer {LIST_MODELS} answered without a 'data' list.")
            models.extend(page)
            if not doc.get("has_more") or not page or not doc.get("last_id"):
                break
            params = {"after_id": doc["last_id"]}
        return models

    def close(self) -> None:
        """Close pooled connections."""
        self._session.close()

    def set_api_key(self, api_key: str) -> None:
        """Use another key from now on (a rotated one)."""
        self._redactor.add(api_key)
        api_key = check_api_key(api_key, "the rotated key")
        self._redactor.add(api_key)
        with self._key_lock:
            self._api_key = api_key

    def redact(self, text: str) -> str:
        """``text`` with every key this client has seen, and every 8+ character piece of one, as ``***``."""
        return self._redactor.redact(text)

    # -- the call loop ----------------------------------------------------------------------------

    def _call(
        self,
        route: Route,
        body: Any = None,
        params: dict[str, Any] | None = None,
        max_retries: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        retries = self.max_retries if max_retries is None else max_retries
        state = _CallState(route, time.monotonic() + self.deadline, retries, headers)
        state.model = request_model(body)
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: self._retryable(exc, state)),
            stop=lambda rs: self._should_stop(rs, state),
            wait=lambda rs: self._wait(rs, state),
            sleep=self._sleep,
            before_sleep=lambda rs: self._before_sleep(rs, state),
            reraise=True,
        )
        try:
            return retrying(self._attempt, body, params, state)
        except PioneerError:
            raise
        except _DeadlinePassed as exc:
            raise PioneerConnectionError(
                f"Pioneer {state.what}: the answer was still arriving when the call's {self.deadline:g} s "
                f"deadline passed{self._tries(retrying)}. Raise the connection extra 'deadline' or try later."
            ) from self._scrubbed(exc)
        except requests.Timeout as exc:
            raise PioneerConnectionError(
                f"Pioneer {state.what} timed out after {self.timeout:g} s{self._tries(retrying)}. "
                "Raise the connection extra 'timeout' or try later."
            ) from self._scrubbed(exc)
        except requests.RequestException as exc:
            raise PioneerConnectionError(
                f"Pioneer {state.what}: could not reach {self.base_url}{self._tries(retrying)} "
                f"({type(exc).__name__}). Check the host and the network."
            ) from self._scrubbed(exc)

    @staticmethod
    def _tries(retrying: Retrying) -> str:
        attempts = retrying.statistics.get("attempt_number", 1)
        return f" ({attempts} attempts)" if attempts > 1 else ""

    def _scrubbed(self, exc: BaseException) -> BaseException | None:
        # requests' own messages carry URLs, never headers; still, never chain anything holding a
        # key, or a piece of one, anywhere in the chain.
        seen: BaseException | None = exc
        while seen is not None:
            if str(seen) != self.redact(str(seen)):
                return None
            seen = seen.__cause__ or seen.__context__
        return exc

    def _auth_header(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"} if self.auth_scheme == "bearer" else {"X-API-Key": key}

    def _attempt(self, body: Any, params: dict[str, Any] | None, state: _CallState) -> Any:
        while True:
            if not self.pacer.acquire(deadline=state.deadline):
                raise PioneerRateLimitError(
                    f"Pioneer {state.what}: the rate-limit wait would pass the call's "
                    f"{self.deadline:g} s deadline. Lower the request rate or raise the deadline."
                )
            with self._key_lock:
                key = self._api_key
            remaining = max(0.1, state.deadline - time.monotonic())
            try:
                with bounded_by(state.deadline):  # the headers' wait too, not only the body's
                    response = self._session.request(
                        state.route.method,
                        self.base_url + state.route.path,
                        json=body,
                        params=params,
                        headers={**state.headers, **self._auth_header(key)},
                        timeout=(min(10.0, self.timeout, remaining), min(self.timeout, remaining)),
                        allow_redirects=False,
                        stream=True,
                    )
                self._read_body(response, state)
            except requests.RequestException as exc:
                self.stats.record()
                if time.monotonic() >= state.deadline and not isinstance(exc, _DeadlinePassed):
                    # Cut by the headers' watchdog, or failed as the deadline passed: either way the
                    # deadline decides, and no retry may start after it.
                    raise _DeadlinePassed(f"deadline passed: {type(exc).__name__}") from None
                raise
            self.stats.record(status=response.status_code)
            self.pacer.observe(response.status_code, response.headers)
            try:
                return self._handle(response, state)
            except PioneerAuthError:
                if not self._try_refreshed_key(key, state):
                    raise

    def _read_body(self, response: requests.Response, state: _CallState) -> None:
        """Read the whole body within the call's deadline (plus one read timeout at most) and size cap.

        ``read1`` returns whatever arrived (after at most one read timeout), so a server trickling
        its answer a byte at a time cannot hold the call past its deadline.
        """
        chunks: list[bytes] = []
        size = 0
        raw = response.raw
        try:
            while True:
                chunk = raw.read1(_READ_CHUNK, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise body_too_large(state.what, MAX_BODY_BYTES)
                if time.monotonic() > state.deadline:
                    raise _DeadlinePassed(f"deadline passed after {size} bytes of the answer")
        except (OSError, ValueError) as exc:  # urllib3's protocol and read errors, as requests raises them
            if isinstance(exc, requests.RequestException):
                raise
            raise requests.ConnectionError(f"the answer broke off: {type(exc).__name__}") from None
        finally:
            response.close()
        response._content = b"".join(chunks)  # what .json()/.text read
        response._content_consumed = True  # type: ignore[attr-defined]

    def _try_refreshed_key(self, used_key: str, state: _CallState) -> bool:
        """After a 401: re-read the key once per call; ``True`` if a different key is now in use."""
        if self._refresh_key is None or state.key_refreshed:
            return False
        state.key_refreshed = True
        # One re-read at a time: when many threads meet the revoked key together, the first one
        # reads the new key and the others just use it (the store is read once, not per thread).
        with self._refresh_lock:
            with self._key_lock:
                current = self._api_key
            if current != used_key:
                return True  # another thread already switched to the rotated key
            fresh = self._refresh_key()
            if not fresh or fresh == used_key:
                return False
            self.set_api_key(fresh)
        log.info("Pioneer %s: key rejected; retrying once with the newly rotated key.", state.what)
        return True

    def _handle(self, response: requests.Response, state: _CallState) -> Any:
        if 200 <= response.status_code < 300:
            self.pacer.on_success()
            self._warming_since = None
            if not response.content:
                return {}
            try:
                return safe_json.loads(response.content)
            except ValueError:
                raise PioneerResponseError(
                    f"Pioneer {state.what} answered HTTP {response.status_code} with a body that is not JSON."
                ) from None
        if 300 <= response.status_code < 400:
            target = urlsplit(response.headers.get("Location", "")).netloc or "another location"
            raise PioneerRedirectError(
                f"Pioneer {state.what} was redirected (HTTP {response.status_code}) to {self.redact(target)}; "
                "redirects are not followed so the API key is never sent elsewhere. "
                "Set the connection host to the final base URL.",
                status=response.status_code,
            )
        error = error_for_response(response, state.what, self.redact, state.model)
        wait = None if error.retry_after is None else min(error.retry_after, self._max_retry_after)
        if isinstance(error, PioneerBillingError):
            pass  # waiting does not help; the caller fails fast
        elif isinstance(error, PioneerRateLimitError):
            self.pacer.on_rate_limited(wait)
        elif isinstance(error, PioneerModelWarmingError):
            # Every thread would meet the same cold model: hold them all until it should be up.
            self.pacer.hold(_DEFAULT_WARMUP_WAIT if wait is None else wait)
        elif wait is not None:
            self.pacer.hold(wait)
        raise error

    # -- tenacity policy ----------------------------------------------------------------------------

    def _retryable(self, exc: BaseException, state: _CallState) -> bool:
        if isinstance(exc, PioneerError):
            return exc.retryable
        if isinstance(exc, requests.ReadTimeout):
            state.read_timeouts += 1
            # The server may have done (and billed) the work; a second retry could bill it again.
            return state.route != INFERENCE or state.read_timeouts <= 1
        return isinstance(exc, requests.ConnectionError | requests.Timeout)

    def _warmup_spent(self) -> float:
        now = time.monotonic()
        if self._warming_since is None:
            self._warming_since = now
        return now - self._warming_since

    def _should_stop(self, retry_state: RetryCallState, state: _CallState) -> bool:
        # Out of retries (a warming model: out of warm-up budget), or the wait would pass the deadline.
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, PioneerModelWarmingError):
            if self._warmup_spent() >= self.warmup_timeout:
                return True
        elif state.retries >= state.max_retries:
            return True
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= state.deadline

    def backoff_ceiling(self, attempt: int) -> float:
        """Largest backoff before retry number ``attempt`` (1-based): base * 2**(attempt-1), capped."""
        return float(min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)))

    def _wait(self, retry_state: RetryCallState, state: _CallState) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, ceiling]. A Retry-After (and a
        # warming model's wait) is enforced separately by the shared pacer gate, for every thread.
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, PioneerModelWarmingError):
            return self._rng.uniform(0.0, 1.0)  # spread the threads the gate releases together
        return self._rng.uniform(0.0, self.backoff_ceiling(state.retries + 1))

    def _before_sleep(self, retry_state: RetryCallState, state: _CallState) -> None:
        self.stats.record(retry=True)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if not isinstance(exc, PioneerModelWarmingError):
            state.retries += 1
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, PioneerError):
            reason = f"HTTP {exc.status}" if exc.status else type(exc).__name__
        else:
            reason = type(exc).__name__ if exc else "unknown error"
        if isinstance(exc, PioneerModelWarmingError):
            log.warning(
                "Pioneer %s: the model is warming up (HTTP 425); waiting (%.0f of %.0f s warm-up budget used).",
                state.what,
                self._warmup_spent(),
                self.warmup_timeout,
            )
            return
        # The shared gate may hold this retry (and every other request) longer than the backoff:
        # say how long, or the log goes quiet for the whole of a long Retry-After.
        held = getattr(self.pacer, "held_for", lambda: 0.0)()
        wait = max(retry_state.upcoming_sleep or 0.0, held)
        log.warning(
            "Pioneer %s: %s; retry %d of %d in %.1f s%s.",
            state.what,
            self.redact(reason),
            state.retries,
            state.max_retries,
            wait,
            " (every request of this task waits for the server's Retry-After)" if held > 1.0 else "",
        )
