"""All mutable state of the Pioneer emulator, in plain Python behind one lock.

The HTTP layer (``app.py``, ``transport.py``) and the admin API only call methods of
:class:`EmulatorState`; nothing here knows about FastAPI, so every behaviour (billing, revocation,
rate limits, model readiness, faults, counters) is implemented once. The arithmetic lives in
small helpers: settings in ``config.py``, money in ``billing.py``, rate limits in ``limits.py`` and
``limiters.py`` (the ``/inference`` limiter's models), the model catalogue in ``catalog.py``,
faults in ``faults.py``, and what differs between API generations in ``profiles.py``.

Billing rule: the token count of a text is its number of whitespace-separated words
(``len(text.split())``); a request costs the sum over its texts.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_pioneer.testing import billing, catalog, faults
from airflow_provider_pioneer.testing.billing import CEILING_CODES, CREDIT_CODES, Account, count_tokens
from airflow_provider_pioneer.testing.catalog import BASE_MODELS
from airflow_provider_pioneer.testing.config import DEFAULT, EmulatorConfig, check_codes, check_money_settings
from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.faults import BAD_RESULTS, ECHO_ENVELOPES, FAULT_KINDS, Fault
from airflow_provider_pioneer.testing.key_variants import KeyVariants
from airflow_provider_pioneer.testing.lifecycle import LifecycleStore
from airflow_provider_pioneer.testing.limiters import LimiterPool
from airflow_provider_pioneer.testing.limits import HourlyLog, SlidingPeak, TokenBucket, retry_after

__all__ = [
    "BAD_RESULTS",
    "BASE_MODELS",
    "BOOTSTRAP_KEY_NAME",
    "CEILING_CODES",
    "CREDIT_CODES",
    "DEFAULT",
    "ECHO_ENVELOPES",
    "FAULT_KINDS",
    "UNSERVABLE_PREFIX",
    "Account",
    "ApiKey",
    "AuthError",
    "EmulatorConfig",
    "EmulatorState",
    "Fault",
    "TokenBucket",
    "count_tokens",
]

BOOTSTRAP_KEY_NAME = "bootstrap"
#: Current profile: fine-tuned model ids starting with this exist but are not servable (409).
UNSERVABLE_PREFIX = "job_unservable"
_RATE_LIMITED = {"code": "rate_limited", "scope": "request-rate"}


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class ApiKey:
    """One API key; revoked keys stay (alive=False) so they answer 401 rather than being unknown."""

    id: str
    name: str
    value: str
    account_id: str
    created_at: str
    alive: bool = True

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at}


@dataclass
class _Usage:
    """Per-account traffic counters: ``/inference`` requests per 60 s window, 429s of the limiter."""

    sent: SlidingPeak = field(default_factory=SlidingPeak)
    admitted: SlidingPeak = field(default_factory=SlidingPeak)
    rate_limited: int = 0


@dataclass
class _Counters:
    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    inference_requests_committed: int = 0
    texts_committed: int = 0
    tokens_billed: int = 0
    text_counts: Counter[str] = field(default_factory=Counter)
    keys_created: int = 0
    keys_revoked: int = 0
    faults_fired: Counter[str] = field(default_factory=Counter)
    max_concurrent_inference: int = 0
    rate_limited: int = 0
    usage: dict[str, _Usage] = field(default_factory=dict)  # by account id


class EmulatorState:
    """Accounts, keys, credits, limits, faults and counters of one emulator (thread-safe).

    :param config: start-up settings; the default account gets ``config.credits``,
        ``config.spend_cap_tokens`` / ``config.credit_ceiling_tokens`` and a bootstrap key named
        ``"bootstrap"``.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.profile = self.config.profile
        c = self.config
        self._lock = threading.Lock()
        self._rng = random.Random(c.seed)
        self._accounts: dict[str, Account] = {}
        self._keys: dict[str, ApiKey] = {}  # by value
        self._limits = LimiterPool(  # by key id (legacy) or account id (current)
            self.profile.inference_rpm if c.rate_limit_per_minute == DEFAULT else c.rate_limit_per_minute,
            model=c.rate_limit_model, burst=c.rate_limit_burst, window_s=c.rate_limit_window_seconds,
            window_in_limit=c.rate_limit_window_in_limit,
        )  # fmt: skip
        self._key_buckets: dict[str, TokenBucket] = {}  # by key id
        self._key_creations: dict[str, HourlyLog] = {}  # by account id; a limit, not a counter
        self._headers = (
            self.profile.rate_limit_headers if c.rate_limit_headers is None else c.rate_limit_headers
        )
        self._create_per_hour = (
            self.profile.create_key_per_hour
            if c.create_key_limit_per_hour == DEFAULT
            else c.create_key_limit_per_hour
        )
        self._warmup = float(c.warmup_seconds)
        self._first_use: dict[str, float] = {}  # model id -> monotonic time of its first call
        self._unservable = set(c.unservable_models)
        self._max_body: int | None = c.max_body_bytes
        self._max_body_response = c.max_body_response
        self._faults: list[Fault] = []
        self._fault_seq = 0
        self._counters = _Counters()
        self._in_flight = 0
        #: Datasets, training jobs and evaluations (``lifecycle.py``).
        self.lifecycle = LifecycleStore()
        #: Paged key listing, revocation by one field (``key_variants.py``).
        self.key_variants = KeyVariants()
        self.default_account = self._new_account(
            c.credits, c.spend_cap_tokens, c.credit_ceiling_tokens, c.credits_code, c.credit_ceiling_code
        )
        self.bootstrap_key = self._create_key(
            self.default_account.id, BOOTSTRAP_KEY_NAME, value=c.bootstrap_key
        ).value

    # -- accounts and keys -------------------------------------------------------------------------
    def _new_account(
        self,
        credits: int | None,
        spend_cap_tokens: int | None,
        ceiling_tokens: int | None = None,
        credits_code: str = "out_of_credits",
        ceiling_code: str = "credit_ceiling_reached",
    ) -> Account:
        account = Account(
            id=f"acct_{len(self._accounts) + 1}", credits=credits, credits_code=credits_code,
            spend_cap_tokens=spend_cap_tokens, ceiling_tokens=ceiling_tokens, ceiling_code=ceiling_code,
        )  # fmt: skip
        self._accounts[account.id] = account
        return account

    def _create_key(self, account_id: str, name: str, value: str | None = None) -> ApiKey:
        key = ApiKey(
            id=f"key_{secrets.token_hex(8)}",
            name=name,
            value=value or f"pio_sk_{secrets.token_hex(24)}",
            account_id=account_id,
            created_at=_now_iso(),
        )
        self._keys[key.value] = key
        self._counters.keys_created += 1
        return key

    def _account_of(self, key_value: str | None) -> Account:
        if key_value is None:
            return self.default_account
        key = self._keys.get(key_value)
        if key is None:
            raise KeyError("unknown key (not issued by this emulator)")
        return self._accounts[key.account_id]

    def new_account(
        self,
        credits: int | None = None,
        spend_cap_tokens: int | None = None,
        credit_ceiling_tokens: int | None = None,
    ) -> tuple[str, str]:
        """Create an account with a bootstrap key; returns ``(key, key_name)``."""
        check_money_settings(self.profile, spend_cap_tokens, credit_ceiling_tokens)
        with self._lock:
            account = self._new_account(credits, spend_cap_tokens, credit_ceiling_tokens)
            return self._create_key(account.id, BOOTSTRAP_KEY_NAME).value, BOOTSTRAP_KEY_NAME

    def create_key(self, name: str, account_of_key: str | None = None) -> dict[str, Any]:
        """Create a key in the account of ``account_of_key`` (default account when None); no limit applies."""
        with self._lock:
            key = self._create_key(self._account_of(account_of_key).id, name)
            return {"key": key.value, **key.public()}

    def create_key_via_api(self, name: str, caller: ApiKey) -> dict[str, Any]:
        """``POST /create-api-key``: like :meth:`create_key`, within the per-account hourly limit.

        :raises AuthError: 429 with ``Retry-After`` when the account created its limit this hour.
        """
        with self._lock:
            log = self._key_creations.setdefault(caller.account_id, HourlyLog())
            if self._create_per_hour is not None:
                wait = log.wait(self._create_per_hour)
                if wait > 0:
                    raise self._too_many(
                        f"API key creation limit reached ({self._create_per_hour} per hour)",
                        {"Retry-After": retry_after(wait)},
                    )
            log.add()
            key = self._create_key(caller.account_id, name)
            return {"key": key.value, **key.public()}

    def list_keys(self, account_of_key: str | None = None) -> list[dict[str, Any]]:
        """Alive keys of an account, without their values, oldest first."""
        with self._lock:
            account_id = self._account_of(account_of_key).id
            return [k.public() for k in self._keys.values() if k.alive and k.account_id == account_id]

    def revoke(self, account_of_key: str | None, name: str | None = None, key_id: str | None = None) -> int:
        """Revoke every alive key of the account with that name (or the key with that id).

        Names are not unique in Pioneer, so revoking by name revokes all keys sharing it.
        Returns how many keys were revoked (0 means not found).
        """
        with self._lock:
            account_id = self._account_of(account_of_key).id
            hits = [
                k for k in self._keys.values()
                if k.alive and k.account_id == account_id
                and ((name is not None and k.name == name) or (key_id is not None and k.id == key_id))
            ]  # fmt: skip
            for k in hits:
                k.alive = False
                self._limits.drop(k.id)
            self._counters.keys_revoked += len(hits)
            return len(hits)

    def key_is_alive(self, key_value: str) -> bool:
        with self._lock:
            key = self._keys.get(key_value)
            return key is not None and key.alive

    def key_name_of(self, key_value: str) -> str | None:
        with self._lock:
            key = self._keys.get(key_value)
            return key.name if key else None

    # -- settings ----------------------------------------------------------------------------------
    def set_credits(
        self, tokens: int | None, account_of_key: str | None = None, code: str | None = None
    ) -> None:
        """Set remaining credits (None: unlimited); ``code`` picks the current profile's 402 code."""
        if code is not None and not self.profile.coded_errors:
            raise ValueError("a 402 code needs api_profile='current' (the legacy 402 has a detail string)")
        check_codes(code, None)
        with self._lock:
            account = self._account_of(account_of_key)
            account.credits = tokens
            if code is not None:
                account.credits_code = code

    def set_spend_cap(self, tokens: int | None, account_of_key: str | None = None) -> None:
        """Legacy: the daily spend cap in tokens (None: off); also resets today's spend."""
        check_money_settings(self.profile, tokens, None)
        with self._lock:
            account = self._account_of(account_of_key)
            account.spend_cap_tokens = tokens
            account.spent_today, account.spent_day = 0, None

    def set_credit_ceiling(
        self, tokens: int | None, code: str = "credit_ceiling_reached", account_of_key: str | None = None
    ) -> None:
        """Current: the monthly credit ceiling in tokens (None: off), answered with a 403 ``code``;
        also resets this month's spend."""
        check_money_settings(self.profile, None, tokens)
        check_codes(None, code)
        with self._lock:
            account = self._account_of(account_of_key)
            account.ceiling_tokens, account.ceiling_code = tokens, code
            account.spent_this_month, account.spent_month = 0, None

    def set_latency(self, latency_ms: float, per_text_latency_ms: float = 0.0) -> None:
        with self._lock:
            self.config.latency_ms = float(latency_ms)
            self.config.per_text_latency_ms = float(per_text_latency_ms)

    def set_rate_limit(
        self,
        per_minute: float | None,
        burst: float | None = None,
        *,
        model: str | None = None,
        window_seconds: float | None = None,
        window_in_limit: bool | None = None,
    ) -> None:
        """The ``/inference`` limit (per key in legacy, per account in current); limits start afresh.

        ``model`` (one of ``limiters.MODELS``), ``window_seconds`` and ``window_in_limit`` are the
        :class:`EmulatorConfig` ``rate_limit_*`` settings; None keeps the one in force.

        :raises ValueError: an unknown model or settings it cannot honour (the old ones are kept).
        """
        with self._lock:
            pool = self._limits
            pool.configure(
                per_minute, burst=burst, model=pool.model if model is None else model,
                window_s=pool.window_s if window_seconds is None else window_seconds,
                window_in_limit=pool.window_in_limit if window_in_limit is None else bool(window_in_limit),
            )  # fmt: skip

    def set_rate_limit_headers(self, enabled: bool) -> None:
        """Send (or hide) ``X-RateLimit-Limit/-Remaining/-Reset`` on ``/inference`` answers."""
        with self._lock:
            self._headers = bool(enabled)

    def set_key_rate_limit(self, per_minute: float | None) -> None:
        with self._lock:
            self.config.key_rate_limit_per_minute = per_minute
            self._key_buckets.clear()

    def set_create_key_limit(self, per_hour: int | None) -> None:
        """``POST /create-api-key`` calls per account and rolling hour (None: unlimited)."""
        with self._lock:
            self._create_per_hour = per_hour

    def set_warmup(self, seconds: float) -> None:
        """Current: models answer 425 for ``seconds`` after their first use; every model is cold again."""
        self._need_readiness("a warm-up")
        with self._lock:
            self._warmup = float(seconds)
            self._first_use.clear()

    def set_unservable_models(self, models: list[str]) -> None:
        """Current: model ids that answer 409 (besides ids starting with ``job_unservable``)."""
        self._need_readiness("a not-servable model")
        with self._lock:
            self._unservable = set(models)

    def set_max_body_bytes(self, limit: int | None, response: str = "html") -> None:
        """Answer request bodies over ``limit`` bytes with a proxy's 413 (``response`` "html" or "json")."""
        if response not in ("html", "json"):
            raise ValueError(f"response must be 'html' or 'json', not {response!r}")
        with self._lock:
            self._max_body, self._max_body_response = limit, response

    def body_limit(self) -> tuple[int | None, str]:
        """The request-body limit in bytes (None: none) and the kind of its 413 body."""
        with self._lock:
            return self._max_body, self._max_body_response

    def _need_readiness(self, what: str) -> None:
        if not self.profile.model_readiness:
            raise ValueError(f"{what} needs api_profile='current'")

    def latency_seconds(self, n_texts: int) -> float:
        return (self.config.latency_ms + self.config.per_text_latency_ms * n_texts) / 1000.0

    # -- request checks ----------------------------------------------------------------------------
    def authenticate(self, key_value: str | None, limit: str | None = None) -> ApiKey:
        """Check a key, the account's credits and (``limit`` = "inference" or "keys") its rate limit.

        :raises AuthError: 401 unknown/revoked key, 402 out of credits, 429 rate limited.
        """
        with self._lock:
            key = self._keys.get(key_value) if key_value else None
            if key is None or not key.alive:
                raise AuthError(401, "Invalid or missing API key")
            billing.refuse_if_broke(self._accounts[key.account_id], self.profile)
            if limit == "inference":
                self._admit_inference(key)
            elif limit == "keys":
                self._admit_keys(key)
            return key

    def inference_headers(self, key: ApiKey) -> dict[str, str]:
        """``X-RateLimit-*`` headers for an ``/inference`` answer to ``key`` ({} when hidden or unlimited)."""
        with self._lock:
            return self._limits.headers(self._bucket_id(key)) if self._headers else {}

    def _bucket_id(self, key: ApiKey) -> str:
        return key.account_id if self.profile.rate_limit_scope == "account" else key.id

    def _admit_inference(self, key: ApiKey) -> None:
        usage = self._counters.usage.setdefault(key.account_id, _Usage())
        usage.sent.add()
        scope = self._bucket_id(key)
        wait = self._limits.hit(scope)
        if wait > 0:
            usage.rate_limited += 1
            self._counters.rate_limited += 1
            headers = {
                "Retry-After": retry_after(wait),
                **(self._limits.headers(scope) if self._headers else {}),
            }
            raise self._too_many("Rate limit exceeded", headers)
        usage.admitted.add()

    def _admit_keys(self, key: ApiKey) -> None:
        per_minute = self.config.key_rate_limit_per_minute
        if per_minute is None:
            return
        bucket = self._key_buckets.get(key.id)
        if bucket is None:
            bucket = self._key_buckets[key.id] = TokenBucket(per_minute)
        wait = bucket.take()
        if wait > 0:
            raise self._too_many("Rate limit exceeded", {"Retry-After": retry_after(wait)})

    def _too_many(self, detail: str, headers: dict[str, str]) -> AuthError:
        if not self.profile.coded_errors:
            return AuthError(429, detail, headers)
        headers = {
            **headers,
            "X-RateLimit-Scope": _RATE_LIMITED["scope"],
            "X-RateLimit-Code": _RATE_LIMITED["code"],
        }
        return AuthError(429, detail, headers, body={"detail": detail, **_RATE_LIMITED})

    def check_model_ready(self, model_id: str) -> None:
        """Current profile: 409 for a model that is not servable, 425 while a model warms up.

        A model's warm-up starts at its first call (that call gets the first 425).
        """
        if not self.profile.model_readiness:
            return
        with self._lock:
            if model_id in self._unservable or model_id.startswith(UNSERVABLE_PREFIX):
                raise AuthError(
                    409,
                    f"Model {model_id} exists but is not servable yet: on-demand provisioning has not "
                    "finished. Check supports_inference / supports_on_demand_inference in GET /base-models.",
                )
            if self._warmup <= 0:
                return
            now = time.monotonic()
            left = self._first_use.setdefault(model_id, now) + self._warmup - now
            if left > 0:
                raise AuthError(
                    425, f"Model {model_id} is warming up; retry later", {"Retry-After": retry_after(left)}
                )

    def check_budget(self, key: ApiKey, tokens: int) -> None:
        """Raise the 402 / spend-cap 429 / ceiling 403 a request of ``tokens`` would get, without billing."""
        with self._lock:
            billing.check_budget(self._accounts[key.account_id], tokens, self.profile)

    def bill_inference(self, key: ApiKey, texts: list[str]) -> int:
        """Commit an inference: check credits and caps, charge, count. Returns the tokens billed.

        :raises AuthError: 402, 429 spend cap or 403 ceiling; nothing is billed then.
        """
        tokens = count_tokens(texts)
        with self._lock:
            account = self._accounts[key.account_id]
            billing.check_budget(account, tokens, self.profile)
            billing.charge(account, tokens)
            c = self._counters
            c.inference_requests_committed += 1
            c.texts_committed += len(texts)
            c.tokens_billed += tokens
            c.text_counts.update(texts)
            return tokens

    model_exists = staticmethod(catalog.model_exists)
    list_models = staticmethod(catalog.list_models)

    # -- faults ------------------------------------------------------------------------------------
    def inject(
        self,
        status: int | None = None,
        fault: str | None = None,
        rate: float | None = None,
        times: int | None = None,
        after: int = 0,
        path: str | None = "/inference",
        headers: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        trickle_bytes: int = 1,
        trickle_interval: float = 1.0,
        envelope: str = "detail",
        body_size: int | None = None,
        offset: int = 0,
        indices: list[int] | None = None,
        bad: str = "null",
    ) -> str:
        """Register a fault and return its id (also the key of ``counters()["faults_fired"]``).

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
        faults.validate(
            status, fault, rate, times, headers, path, trickle_bytes, trickle_interval, envelope, body_size,
            indices, bad,
        )  # fmt: skip
        if fault == "echo_key" and status is None:
            status = 401
        with self._lock:
            self._fault_seq += 1
            kind = fault or str(status)
            f = Fault(
                id=f"f{self._fault_seq}-{kind}", status=status, kind=fault, rate=rate, times=times,
                after=after, path=path, headers=dict(headers or {}), body=body, content_type=content_type,
                trickle_bytes=trickle_bytes, trickle_interval=trickle_interval, envelope=envelope,
                body_size=body_size, offset=offset, indices=None if indices is None else list(indices), bad=bad,
            )  # fmt: skip
            self._faults.append(f)
            return f.id

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def faults(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.as_dict() for f in self._faults]

    def match_fault(self, path: str, lose_response: bool = False) -> Fault | None:
        """The fault that fires for this request, if any (request faults, or the lose_response phase)."""
        with self._lock:
            for f in self._faults:
                if (f.kind == "lose_response") != lose_response or not f.matches(path):
                    continue
                f.seen += 1
                if f.seen <= f.after or (f.times is not None and f.fired >= f.times):
                    continue
                if f.rate is not None and self._rng.random() >= f.rate:
                    continue
                f.fired += 1
                self._counters.faults_fired[f.id] += 1
                return f
            return None

    # -- counters ----------------------------------------------------------------------------------
    def record_request(self, method: str, path: str) -> None:
        with self._lock:
            self._counters.requests[f"{method} {path}"] += 1

    def record_status(self, status: int) -> None:
        with self._lock:
            self._counters.statuses[str(status)] += 1

    def inference_started(self) -> None:
        with self._lock:
            self._in_flight += 1
            c = self._counters
            c.max_concurrent_inference = max(c.max_concurrent_inference, self._in_flight)

    def inference_finished(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def counters(self) -> dict[str, Any]:
        """A JSON-able snapshot of the counters (see :meth:`account_counters` for one account's)."""
        with self._lock:
            c = self._counters
            usage = c.usage.values()
            return {
                "requests": dict(c.requests),
                "statuses": dict(c.statuses),
                "inference_requests_committed": c.inference_requests_committed,
                "texts_committed": c.texts_committed,
                "tokens_billed": c.tokens_billed,
                "text_counts": dict(c.text_counts),
                "keys_alive": sum(1 for k in self._keys.values() if k.alive),
                "keys_created": c.keys_created,
                "keys_revoked": c.keys_revoked,
                "keys_created_last_hour": sum(log.count() for log in self._key_creations.values()),
                "faults_fired": dict(c.faults_fired),
                "max_concurrent_inference": c.max_concurrent_inference,
                "inference_in_flight": self._in_flight,
                "rate_limited": c.rate_limited,
                "inference_rpm_peak": max((u.sent.peak for u in usage), default=0),
                "inference_rpm_peak_admitted": max((u.admitted.peak for u in usage), default=0),
            }

    def account_counters(self, account_of_key: str | None = None) -> dict[str, Any]:
        """One account's traffic and money: ``/inference`` requests (``inference_requests``; the
        most in any 60 s window, sent and admitted by the limiter), its 429s from the limiter,
        ``/create-api-key`` calls in the last hour, credits left and spend."""
        with self._lock:
            account = self._account_of(account_of_key)
            usage = self._counters.usage.get(account.id, _Usage())
            log = self._key_creations.get(account.id)
            account.roll_periods()
            return {
                "account_id": account.id,
                "inference_requests": usage.sent.total,
                "inference_rpm_peak": usage.sent.peak,
                "inference_rpm_peak_admitted": usage.admitted.peak,
                "rate_limited": usage.rate_limited,
                "keys_created_last_hour": log.count() if log else 0,
                "credits": account.credits,
                "spent_today": account.spent_today,
                "spent_this_month": account.spent_this_month,
            }

    def reset_counters(self) -> None:
        """Zero every counter (keys, accounts, credits, limits and faults are kept)."""
        with self._lock:
            self._counters = _Counters()
        self.lifecycle.reset_counters()
