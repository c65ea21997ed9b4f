"""PioneerClient: Pioneer's HTTP protocol, with retries. Knows nothing of Airflow.

Everything about talking to the API lives here: base-URL policy, the
``X-API-Key`` header, no redirects, pooled connections, typed errors, and the
retry policy:

* retried: connection errors, 500/502/503/504, and 429 unless it is the spend cap;
* never retried: 401 (but see ``refresh_key``), 402, 404, 400/422, the spend cap;
* a read timeout on ``/inference`` may already have been billed: retried once at most;
* waits: full-jitter exponential backoff (base 1 s, cap 20 s); a ``Retry-After``
  (seconds or HTTP date, capped) closes a gate shared by every thread using
  this client, so one 429 slows all of them;
* a total deadline per call, after which no retry starts.
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
from requests.adapters import HTTPAdapter
from tenacity import RetryCallState, Retrying, retry_if_exception

from airflow_provider_pioneer import __version__
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerConfigurationError,
    PioneerConnectionError,
    PioneerError,
    PioneerRateLimitError,
    PioneerResponseError,
    PioneerServerError,
    PioneerSpendCapError,
)
from airflow_provider_pioneer.pacing import Pacer
from airflow_provider_pioneer.responses import error_for_response
from airflow_provider_pioneer.urls import DEFAULT_BASE_URL, validate_base_url

__all__ = ["DEFAULT_BASE_URL", "ClientStats", "PioneerClient", "validate_base_url"]

log = logging.getLogger(__name__)

RETRIED_SERVER_STATUSES = frozenset({500, 502, 503, 504})
INFERENCE_PATH = "/inference"


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

    def __init__(self, what: str, path: str, deadline: float) -> None:
        self.what = what
        self.path = path
        self.deadline = deadline
        self.read_timeouts = 0
        self.key_refreshed = False


class PioneerClient:
    """HTTP client for the Pioneer API.

    :param base_url: API root, e.g. ``https://api.pioneer.ai`` (see :func:`validate_base_url`).
    :param api_key: the key sent as ``X-API-Key``; never logged or shown.
    :param timeout: seconds to wait for each response.
    :param max_retries: retries after the first attempt, for retryable failures.
    :param deadline: seconds one call may take in total, retries and waits included.
    :param pool_size: pooled connections kept open (size it to the threads in use).
    :param allow_insecure_http: allow ``http://`` to a non-loopback host.
    :param pacer: shared pacing (``Retry-After`` gate, optional steady rate); one is created if omitted.
    :param refresh_key: called once after a 401; returning a different key retries with it
        (how a key rotated mid-run is picked up).
    :param backoff_base: first backoff ceiling, seconds.
    :param backoff_cap: largest backoff ceiling, seconds.
    :param max_retry_after: longest ``Retry-After`` obeyed, seconds (a server asking for more is capped).
    :param rng: random source for jitter (seed it in tests).
    :param sleep: how to wait between attempts (replace in unit tests).
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
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not api_key:
            raise PioneerConfigurationError(
                "No Pioneer API key: set it in the connection's API key field (or its api_key_variable)."
            )
        if max_retries < 0 or timeout <= 0 or deadline <= 0:
            raise PioneerConfigurationError("timeout and deadline must be positive and max_retries >= 0.")
        self.base_url = validate_base_url(base_url, allow_insecure_http=allow_insecure_http)
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
        #: How to wait between attempts; replaceable (e.g. by a wait that a stop event ends early).
        self.retry_sleep = sleep
        self._key_lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._api_key = api_key
        self._known_keys: list[str] = [api_key]
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(1, pool_size), max_retries=0)
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
        doc = self._call("POST", INFERENCE_PATH, body)
        result = doc.get("result") if isinstance(doc, dict) else None
        if isinstance(texts, list) and not (isinstance(result, list) and len(result) == len(texts)):
            raise PioneerResponseError(
                f"Pioneer POST /inference answered {type(result).__name__} for a batch of {len(texts)} texts; "
                "expected one result per text."
            )
        if result is None:
            raise PioneerResponseError("Pioneer POST /inference answered without a 'result'.")
        return doc

    def create_api_key(self, name: str) -> dict[str, Any]:
        """``POST /create-api-key``: returns ``{key, name, created_at, ...}``; the key is shown only now."""
        doc = self._call("POST", "/create-api-key", {"name": name})
        if not isinstance(doc, dict) or not isinstance(doc.get("key"), str) or not doc["key"]:
            raise PioneerResponseError("Pioneer POST /create-api-key answered without a key.")
        self._remember_secret(doc["key"])
        return doc

    def list_api_keys(self) -> list[dict[str, Any]]:
        """``GET /list-api-keys``: the account's key records (never key values)."""
        doc = self._call("GET", "/list-api-keys")
        keys = doc.get("keys") if isinstance(doc, dict) else doc
        if not isinstance(keys, list):
            raise PioneerResponseError("Pioneer GET /list-api-keys answered without a list of keys.")
        return keys

    def delete_api_key(self, name: str) -> dict[str, Any]:
        """``DELETE /delete-api-key``: revoke the key called ``name`` (immediate, permanent)."""
        doc = self._call("DELETE", "/delete-api-key", {"name": name})
        return doc if isinstance(doc, dict) else {"deleted": True, "name": name}

    def list_base_models(self) -> list[dict[str, Any]]:
        """``GET /v1/models``: the model catalogue, every page of it."""
        models: list[dict[str, Any]] = []
        params: dict[str, Any] = {}
        for _ in range(1000):  # a bound, in case a server never says has_more=false
            doc = self._call("GET", "/v1/models", params=params)
            page = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(page, list):
                raise PioneerResponseError("Pioneer GET /v1/models answered without a 'data' list.")
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
        with self._key_lock:
            self._api_key = api_key
        self._remember_secret(api_key)

    def redact(self, text: str) -> str:
        """``text`` with every key this client has seen replaced by ``***``."""
        for key in self._known_keys:
            if key:
                text = text.replace(key, "***")
        return text

    # -- the call loop ----------------------------------------------------------------------------

    def _remember_secret(self, key: str) -> None:
        with self._key_lock:
            if key not in self._known_keys:
                self._known_keys.append(key)

    def _call(self, method: str, path: str, body: Any = None, params: dict[str, Any] | None = None) -> Any:
        state = _CallState(f"{method} {path}", path, time.monotonic() + self.deadline)
        retrying = Retrying(
            retry=retry_if_exception(lambda exc: self._retryable(exc, state)),
            stop=lambda rs: self._should_stop(rs, state),
            wait=self._wait,
            sleep=self.retry_sleep,
            before_sleep=lambda rs: self._before_sleep(rs, state),
            reraise=True,
        )
        try:
            return retrying(self._attempt, method, path, body, params, state)
        except PioneerError:
            raise
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
        # requests' own messages carry URLs, never headers; still, never chain anything holding a key.
        return None if any(k and k in str(exc) for k in self._known_keys) else exc

    def _attempt(
        self, method: str, path: str, body: Any, params: dict[str, Any] | None, state: _CallState
    ) -> Any:
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
                response = self._session.request(
                    method,
                    self.base_url + path,
                    json=body,
                    params=params,
                    headers={"X-API-Key": key},
                    timeout=(min(10.0, self.timeout, remaining), min(self.timeout, remaining)),
                    allow_redirects=False,
                )
            except requests.RequestException:
                self.stats.record()
                raise
            self.stats.record(status=response.status_code)
            self.pacer.observe(response.status_code, response.headers)
            try:
                return self._handle(response, state)
            except PioneerAuthError:
                if not self._try_refreshed_key(key, state):
                    raise

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
            if not response.content:
                return {}
            try:
                return response.json()
            except ValueError:
                raise PioneerResponseError(
                    f"Pioneer {state.what} answered HTTP {response.status_code} with a body that is not JSON."
                ) from None
        if 300 <= response.status_code < 400:
            target = urlsplit(response.headers.get("Location", "")).netloc or "another location"
            raise PioneerResponseError(
                f"Pioneer {state.what} was redirected (HTTP {response.status_code}) to {self.redact(target)}; "
                "redirects are not followed so the API key is never sent elsewhere. "
                "Set the connection host to the final base URL.",
                status=response.status_code,
            )
        error = error_for_response(response, state.what, self.redact)
        if error.retry_after is not None:
            wait = min(error.retry_after, self._max_retry_after)
            if isinstance(error, PioneerSpendCapError):
                pass  # waiting does not help; the caller fails fast
            elif response.status_code == 429:
                self.pacer.on_rate_limited(wait)
            else:
                self.pacer.hold(wait)
        elif response.status_code == 429 and not isinstance(error, PioneerSpendCapError):
            self.pacer.on_rate_limited(None)
        raise error

    # -- tenacity policy ----------------------------------------------------------------------------

    def _retryable(self, exc: BaseException, state: _CallState) -> bool:
        if isinstance(exc, PioneerSpendCapError):
            return False
        if isinstance(exc, PioneerRateLimitError):
            return exc.status == 429
        if isinstance(exc, PioneerServerError):
            return exc.status in RETRIED_SERVER_STATUSES
        if isinstance(exc, requests.ReadTimeout):
            state.read_timeouts += 1
            # The server may have done (and billed) the work; a second retry could bill it again.
            return state.path != INFERENCE_PATH or state.read_timeouts <= 1
        return isinstance(exc, requests.ConnectionError | requests.Timeout)

    def _should_stop(self, retry_state: RetryCallState, state: _CallState) -> bool:
        # Out of retries, or the wait alone would pass the call's deadline.
        if retry_state.attempt_number > self.max_retries:
            return True
        return time.monotonic() + (retry_state.upcoming_sleep or 0.0) >= state.deadline

    def backoff_ceiling(self, attempt: int) -> float:
        """Largest backoff before retry number ``attempt`` (1-based): base * 2**(attempt-1), capped."""
        return float(min(self._backoff_cap, self._backoff_base * 2 ** (attempt - 1)))

    def _wait(self, retry_state: RetryCallState) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, ceiling]. A Retry-After
        # is enforced separately by the shared pacer gate, for every thread at once.
        return self._rng.uniform(0.0, self.backoff_ceiling(retry_state.attempt_number))

    def _before_sleep(self, retry_state: RetryCallState, state: _CallState) -> None:
        self.stats.record(retry=True)
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, PioneerError):
            reason = f"HTTP {exc.status}" if exc.status else type(exc).__name__
        else:
            reason = type(exc).__name__ if exc else "unknown error"
        log.warning(
            "Pioneer %s: %s; retry %d of %d in %.1f s.",
            state.what,
            self.redact(reason),
            retry_state.attempt_number,
            self.max_retries,
            retry_state.upcoming_sleep,
        )
