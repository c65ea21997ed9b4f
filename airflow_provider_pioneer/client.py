"""PioneerClient: Pioneer's HTTP protocol, with retries. Knows nothing of Airflow's machinery.

It does import Airflow once, for one name: its errors (``exceptions.py``) subclass Airflow's
``AirflowException`` (DESIGN: ``PioneerError`` is one), so that a task failing on one is an
Airflow failure with its message, and ``except AirflowException`` in a user's DAG catches it.
That costs the first import about 2 s (``airflow.sdk``); nothing else here touches Airflow: no
connection, Variable, log handler or configuration (the hook brings those).

The client is the rooms' meeting point, and owns none of their rules:

* the retry policy: :mod:`~airflow_provider_pioneer.retry` (:class:`RetryPolicy`: what is
  retried, the backoff, the warm-up budget, the deadline, the ``Retry-After`` gate);
  :meth:`PioneerClient.request` runs its loop;
* what both transports send and how an answer is judged: :mod:`~airflow_provider_pioneer.http_core`
  (headers, success decoding, the body cap), the error mapping
  :mod:`~airflow_provider_pioneer.http_errors`;
* the exchange over requests (the deadline on headers and body): :mod:`~airflow_provider_pioneer.sync_http`;
* the key, its checks and the 401 re-read (the :data:`~airflow_provider_pioneer.credentials.KeyRefresher`
  a key store plugs in): :mod:`~airflow_provider_pioneer.credentials`;
* how fast requests leave: :mod:`~airflow_provider_pioneer.pacing`.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Any

import requests

from airflow_provider_pioneer.credentials import AUTH_SCHEMES, CurrentKey, KeyRefresher, check_api_key
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerConfigurationError,
    PioneerError,
    PioneerModelWarmingError,
    PioneerRateLimitError,
    PioneerResponseError,
)
from airflow_provider_pioneer.http_core import (
    MAX_BODY_BYTES,
    decode_answer,
    request_headers,
    result_problem,
)
from airflow_provider_pioneer.http_errors import request_model
from airflow_provider_pioneer.key_api import KeyManagement
from airflow_provider_pioneer.pacing import Pacer
from airflow_provider_pioneer.redaction import Redactor
from airflow_provider_pioneer.retry import CallRecord, Outcome, RetryPolicy
from airflow_provider_pioneer.sync_http import (
    ClientStats,
    connection_error,
    exchange,
    failure_of,
    new_session,
)
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
    "MAX_BODY_BYTES",
    "ClientStats",
    "PioneerClient",
    "check_api_key",
    "validate_base_url",
]

log = logging.getLogger(__name__)


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
    :param refresh_key: a :data:`~airflow_provider_pioneer.credentials.KeyRefresher`, called once
        per call after a 401; returning a different key sends the call again with it (how a key
        rotated mid-run, in any key store, is picked up).
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
        refresh_key: KeyRefresher | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 20.0,
        max_retry_after: float = 120.0,
        rng: random.Random | None = None,
        sleep: Callable[[float], None] | None = None,
        auth_scheme: str = "x-api-key",
        warmup_timeout: float = 600.0,
    ) -> None:
        self._redactor = Redactor()
        self._key = CurrentKey(api_key, self._redactor, refresh_key)
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
        self.timeout = float(timeout)
        self.deadline = float(deadline)
        self.retry_policy = RetryPolicy(
            max_retries=max_retries,
            backoff_base=backoff_base,
            backoff_cap=backoff_cap,
            max_retry_after=max_retry_after,
            warmup_timeout=warmup_timeout,
            rng=rng,
        )
        self.pacer = pacer or Pacer()
        self.stats = ClientStats()
        self._sleep = sleep or self.pacer.sleep
        self._keys = KeyManagement(self.request)
        self._session = new_session(pool_size)

    @property
    def max_retries(self) -> int:
        """Retries after the first attempt, for retryable failures (the policy's budget)."""
        return self.retry_policy.max_retries

    @property
    def warmup_timeout(self) -> float:
        """Seconds, in all, this client waits for warming models (425) to come up."""
        return self.retry_policy.warmup_timeout

    def backoff_ceiling(self, attempt: int) -> float:
        """Largest backoff before retry number ``attempt`` (1-based); see :class:`RetryPolicy`."""
        return self.retry_policy.backoff_ceiling(attempt)

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
        doc = self.request(INFERENCE, body)
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
        doc = self.request(CREATE_API_KEY, {"name": name}, max_retries=0)
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
            doc = self.request(LIST_MODELS, params=params)
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
        self._key.set(api_key)

    def redact(self, text: str) -> str:
        """``text`` with every key this client has seen, and every 8+ character piece of one, as ``***``."""
        return self._redactor.redact(text)

    # -- the call loop ----------------------------------------------------------------------------

    def request(
        self,
        route: Route,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        max_retries: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """One call of ``route`` under every rule of this client: the deadline, the pacing, the
        retries (:class:`~airflow_provider_pioneer.retry.RetryPolicy`), the 401 key re-read and the
        typed errors. Returns the answer's JSON document (``{}`` for an empty 2xx).

        :param route: the route (bound: ``TRAINING_JOB.bind(job_id=...)``).
        :param body: the JSON body, if any.
        :param params: the query.
        :param max_retries: this call's retry budget (``0``: a call that must never be repeated).
        :param headers: extra headers (``Idempotency-Key``...).
        :raises PioneerError: its typed subclass, after the retries the policy allowed.
        """
        what = str(route)
        call = self.retry_policy.start(
            what, time.monotonic() + self.deadline, max_retries, read_timeout_once=route == INFERENCE
        )
        model = request_model(body)
        while True:
            failure: Exception
            outcome: Outcome
            try:
                return self._attempt(route, body, params, headers or {}, call, model)
            except PioneerError as exc:
                failure = outcome = exc
            except requests.RequestException as exc:
                failure, outcome = exc, failure_of(exc)
            wait = self.retry_policy.next_wait(call, outcome)
            if wait is None:
                if isinstance(failure, PioneerError):
                    raise failure
                raise connection_error(
                    failure, call, base_url=self.base_url, timeout=self.timeout, deadline=self.deadline
                ) from self._scrubbed(failure)
            self.stats.record(retry=True)
            self._log_retry(call, failure, wait)
            self._sleep(wait)

    def _log_retry(self, call: CallRecord, outcome: Exception, wait: float) -> None:
        if isinstance(outcome, PioneerModelWarmingError):
            log.warning(
                "Pioneer %s: the model is warming up (HTTP 425); waiting (%.0f of %.0f s warm-up budget used).",
                call.what,
                self.retry_policy.warmup_spent(),
                self.warmup_timeout,
            )
            return
        reason = type(outcome).__name__
        if isinstance(outcome, PioneerError) and outcome.status:
            reason = f"HTTP {outcome.status}"
        # The shared gate may hold this retry (and every other request) longer than the backoff:
        # say how long, or the log goes quiet for the whole of a long Retry-After.
        held = self.pacer.held_for()
        log.warning(
            "Pioneer %s: %s; retry %d of %d in %.1f s%s.",
            call.what,
            self.redact(reason),
            call.retries,
            call.max_retries,
            max(wait, held),
            " (every request of this task waits for the server's Retry-After)" if held > 1.0 else "",
        )

    def _scrubbed(self, exc: BaseException) -> BaseException | None:
        # requests' own messages carry URLs, never headers; still, never chain anything holding a
        # key, or a piece of one, anywhere in the chain.
        seen: BaseException | None = exc
        while seen is not None:
            if str(seen) != self.redact(str(seen)):
                return None
            seen = seen.__cause__ or seen.__context__
        return exc

    def _attempt(
        self,
        route: Route,
        body: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str],
        call: CallRecord,
        model: tuple[str, str] | None,
    ) -> Any:
        while True:
            if not self.pacer.acquire(deadline=call.deadline):
                raise PioneerRateLimitError(
                    f"Pioneer {call.what}: the rate-limit wait would pass the call's "
                    f"{self.deadline:g} s deadline. Lower the request rate or raise the deadline."
                )
            key = self._key.get()
            try:
                answer = exchange(
                    self._session, route.method, self.base_url + route.path, body=body, params=params,
                    headers={**headers, **request_headers(self.auth_scheme, key)}, timeout=self.timeout, call=call,
                )  # fmt: skip
            except requests.RequestException:
                self.stats.record()
                raise
            self.stats.record(status=answer.status)
            self.pacer.observe(answer.status, answer.headers)
            if answer.ok:
                self.pacer.on_success()
                self.retry_policy.on_success()
            try:
                return decode_answer(answer, call.what, self.redact, model)
            except PioneerAuthError as error:
                self.retry_policy.hold_gate(error, self.pacer)
                if call.key_refreshed or not self._key.replaced_after_401(key, call.what):
                    raise
                call.key_refreshed = True
            except PioneerError as error:
                self.retry_policy.hold_gate(error, self.pacer)
                raise
