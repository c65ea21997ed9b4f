"""All mutable state of the Pioneer emulator, in plain Python behind one lock.

The HTTP layer (``app.py``) and the admin API only call methods of
:class:`EmulatorState`; nothing here knows about FastAPI, so every behaviour
(billing, revocation, rate limits, faults, counters) is implemented once.

Billing rule: the token count of a text is its number of whitespace-separated
words (``len(text.split())``); a request costs the sum over its texts.
"""

from __future__ import annotations

import math
import random
import secrets
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = [
    "BASE_MODELS",
    "BOOTSTRAP_KEY_NAME",
    "FAULT_KINDS",
    "Account",
    "ApiKey",
    "AuthError",
    "EmulatorConfig",
    "EmulatorState",
    "Fault",
    "TokenBucket",
    "count_tokens",
]

#: Base encoder models every account can call; ids starting with ``job_`` or UUIDs are fine-tuned models.
BASE_MODELS: tuple[str, ...] = ("fastino/gliner2-base-v1", "fastino/gliner2-large-v1")
BOOTSTRAP_KEY_NAME = "bootstrap"
#: Values of ``fault=`` for :meth:`EmulatorState.inject` (``status=`` covers plain error answers).
FAULT_KINDS = ("drop", "lose_response", "redirect")
_MODELS_CREATED_AT = "2025-01-15T00:00:00Z"


def count_tokens(texts: list[str]) -> int:
    """Billable tokens of a request: whitespace-separated words summed over its texts."""
    return sum(len(t.split()) for t in texts)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _seconds_to_utc_midnight() -> int:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


class AuthError(Exception):
    """A request the state refuses: ``status`` and ``detail`` become the HTTP answer.

    :param status: HTTP status code.
    :param detail: the ``detail`` of the JSON body.
    :param headers: extra response headers (``Retry-After``, ``X-RateLimit-Reason``).
    """

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}


@dataclass
class EmulatorConfig:
    """Start-up settings of an emulator (most can be changed later through the state).

    :param latency_ms: fixed wait of each ``/inference`` call.
    :param per_text_latency_ms: extra wait per text of an ``/inference`` call.
    :param rate_limit_per_minute: per-key token bucket on ``/inference``; None disables.
    :param rate_limit_burst: bucket capacity; None means one second's worth (at least 1).
    :param key_rate_limit_per_minute: per-key limit on the key-management endpoints; None disables.
    :param credits: tokens the default account may spend; None is unlimited.
    :param spend_cap_tokens: daily (UTC) spend cap of the default account in tokens; None disables.
    :param seed: seed of the random generator behind fault ``rate``.
    :param max_text_chars: longer texts are rejected with 422.
    :param bootstrap_key: fixed value of the bootstrap key (random when None).
    """

    latency_ms: float = 0.0
    per_text_latency_ms: float = 0.0
    rate_limit_per_minute: float | None = 1200
    rate_limit_burst: float | None = None
    key_rate_limit_per_minute: float | None = None
    credits: int | None = None
    spend_cap_tokens: int | None = None
    seed: int = 0
    max_text_chars: int = 10_000
    bootstrap_key: str | None = None


class TokenBucket:
    """Classic token bucket; ``take`` returns 0 when allowed, else seconds until a token is available.

    :param per_minute: refill rate.
    :param burst: capacity (None: one second's worth, at least 1).
    """

    def __init__(self, per_minute: float, burst: float | None = None) -> None:
        self.rate = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, self.rate)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class Account:
    """A Pioneer account: keys belong to it, credits and the spend cap are per account."""

    id: str
    credits: int | None = None
    spend_cap_tokens: int | None = None
    spent_day: date | None = None
    spent_today: int = 0


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
class Fault:
    """An injected fault; see :meth:`EmulatorState.inject`."""

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
    seen: int = 0
    fired: int = 0

    def matches(self, path: str) -> bool:
        return path == self.path if self.path is not None else path != "/health"

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "status": self.status, "fault": self.kind, "rate": self.rate,
            "times": self.times, "after": self.after, "path": self.path, "fired": self.fired,
        }  # fmt: skip


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


class EmulatorState:
    """Accounts, keys, credits, limits, faults and counters of one emulator (thread-safe).

    :param config: start-up settings; the default account gets ``config.credits`` and
        ``config.spend_cap_tokens`` and a bootstrap key named ``"bootstrap"``.
    """

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self._lock = threading.Lock()
        self._rng = random.Random(self.config.seed)
        self._accounts: dict[str, Account] = {}
        self._keys: dict[str, ApiKey] = {}  # by value
        self._buckets: dict[str, TokenBucket] = {}  # by key id
        self._key_buckets: dict[str, TokenBucket] = {}
        self._faults: list[Fault] = []
        self._fault_seq = 0
        self._counters = _Counters()
        self._in_flight = 0
        self.default_account = self._new_account(self.config.credits, self.config.spend_cap_tokens)
        self.bootstrap_key = self._create_key(
            self.default_account.id, BOOTSTRAP_KEY_NAME, value=self.config.bootstrap_key
        ).value

    # -- accounts and keys -------------------------------------------------------------------------
    def _new_account(self, credits: int | None, spend_cap_tokens: int | None) -> Account:
        account = Account(
            id=f"acct_{len(self._accounts) + 1}", credits=credits, spend_cap_tokens=spend_cap_tokens
        )
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
            raise KeyError(f"unknown key {key_value[:12]}...")
        return self._accounts[key.account_id]

    def new_account(self, credits: int | None = None, spend_cap_tokens: int | None = None) -> tuple[str, str]:
        """Create an account with a bootstrap key; returns ``(key, key_name)``."""
        with self._lock:
            account = self._new_account(credits, spend_cap_tokens)
            return self._create_key(account.id, BOOTSTRAP_KEY_NAME).value, BOOTSTRAP_KEY_NAME

    def create_key(self, name: str, account_of_key: str | None = None) -> dict[str, Any]:
        """Create a key in the account of ``account_of_key`` (default account when None)."""
        with self._lock:
            key = self._create_key(self._account_of(account_of_key).id, name)
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
                self._buckets.pop(k.id, None)
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
    def set_credits(self, tokens: int | None, account_of_key: str | None = None) -> None:
        with self._lock:
            self._account_of(account_of_key).credits = tokens

    def set_spend_cap(self, tokens: int | None, account_of_key: str | None = None) -> None:
        with self._lock:
            account = self._account_of(account_of_key)
            account.spend_cap_tokens = tokens
            account.spent_today, account.spent_day = 0, None

    def set_latency(self, latency_ms: float, per_text_latency_ms: float = 0.0) -> None:
        with self._lock:
            self.config.latency_ms = float(latency_ms)
            self.config.per_text_latency_ms = float(per_text_latency_ms)

    def set_rate_limit(self, per_minute: float | None, burst: float | None = None) -> None:
        with self._lock:
            self.config.rate_limit_per_minute = per_minute
            self.config.rate_limit_burst = burst
            self._buckets.clear()

    def set_key_rate_limit(self, per_minute: float | None) -> None:
        with self._lock:
            self.config.key_rate_limit_per_minute = per_minute
            self._key_buckets.clear()

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
            account = self._accounts[key.account_id]
            if account.credits is not None and account.credits <= 0:
                raise AuthError(402, "Insufficient credits: top up your account to continue")
            if limit == "inference":
                self._take(
                    self._buckets, key.id, self.config.rate_limit_per_minute, self.config.rate_limit_burst
                )
            elif limit == "keys":
                self._take(self._key_buckets, key.id, self.config.key_rate_limit_per_minute, None)
            return key

    @staticmethod
    def _take(
        buckets: dict[str, TokenBucket], key_id: str, per_minute: float | None, burst: float | None
    ) -> None:
        if per_minute is None:
            return
        bucket = buckets.get(key_id)
        if bucket is None:
            bucket = buckets[key_id] = TokenBucket(per_minute, burst)
        wait = bucket.take()
        if wait > 0:
            raise AuthError(429, "Rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})

    def check_budget(self, key: ApiKey, tokens: int) -> None:
        """Raise the 402 / spend-cap 429 a request of ``tokens`` would get, without billing."""
        with self._lock:
            self._check_budget(self._accounts[key.account_id], tokens)

    def _check_budget(self, account: Account, tokens: int) -> None:
        if account.credits is not None and account.credits < tokens:
            raise AuthError(
                402, f"Insufficient credits: {account.credits} tokens left, request needs {tokens}"
            )
        if account.spend_cap_tokens is not None:
            today = datetime.now(UTC).date()
            if account.spent_day != today:
                account.spent_day, account.spent_today = today, 0
            if account.spent_today + tokens > account.spend_cap_tokens:
                raise AuthError(
                    429,
                    "Daily spend cap exceeded",
                    {
                        "X-RateLimit-Reason": "daily_spend_cap_exceeded",
                        "Retry-After": str(_seconds_to_utc_midnight()),
                    },
                )

    def bill_inference(self, key: ApiKey, texts: list[str]) -> int:
        """Commit an inference: check credits and spend cap, charge, count. Returns the tokens billed.

        :raises AuthError: 402 (not enough credits) or 429 spend cap; nothing is billed then.
        """
        tokens = count_tokens(texts)
        with self._lock:
            account = self._accounts[key.account_id]
            self._check_budget(account, tokens)
            if account.credits is not None:
                account.credits -= tokens
            if account.spend_cap_tokens is not None:
                account.spent_today += tokens
            c = self._counters
            c.inference_requests_committed += 1
            c.texts_committed += len(texts)
            c.tokens_billed += tokens
            c.text_counts.update(texts)
            return tokens

    @staticmethod
    def model_exists(model_id: str) -> bool:
        if model_id in BASE_MODELS or model_id.startswith("job_"):
            return True
        try:
            uuid.UUID(model_id)
        except ValueError:
            return False
        return True

    @staticmethod
    def list_models(limit: int | None = None, after_id: str | None = None) -> dict[str, Any]:
        """A ModelListResponse page of the base models (``after_id`` is exclusive)."""
        ids = list(BASE_MODELS)
        if after_id is not None:
            ids = ids[ids.index(after_id) + 1 :] if after_id in ids else []
        page = ids[:limit] if limit is not None else ids
        data = [
            {"id": m, "type": "model", "display_name": m.split("/")[-1], "created_at": _MODELS_CREATED_AT}
            for m in page
        ]
        return {
            "data": data,
            "has_more": len(page) < len(ids),
            "first_id": page[0] if page else None,
            "last_id": page[-1] if page else None,
        }

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
    ) -> str:
        """Register a fault and return its id (also the key of ``counters()["faults_fired"]``).

        Exactly one of ``status`` (answer that status) or ``fault`` (``"drop"``: close the connection
        before processing; ``"lose_response"``: process fully, then close without answering;
        ``"redirect"``: 307 with ``headers["Location"]``). ``rate`` is the probability per matching
        request (seeded), ``times`` caps how often it fires, ``after`` skips the first N matching
        requests. ``path`` None matches every path but ``/health`` (the admin API is never faulted).
        Faults are tried in order; the first that fires wins and the later ones do not see that
        request. Request faults are evaluated before authentication; a ``lose_response`` fault only
        sees successful (2xx) answers, so its ``after`` counts successes. ``headers`` are added to
        the answer; ``body`` replaces the default ``{"detail": ...}`` (with ``content_type``
        "text/html" and no body, a proxy-style HTML page is sent).
        """
        if (status is None) == (fault is None):
            raise ValueError("give exactly one of status= or fault=")
        if fault is not None and fault not in FAULT_KINDS:
            raise ValueError(f"fault must be one of {FAULT_KINDS}, not {fault!r}")
        if fault == "redirect" and not (headers and "Location" in headers):
            raise ValueError('fault="redirect" needs headers={"Location": ...}')
        if rate is not None and not 0.0 <= rate <= 1.0:
            raise ValueError("rate must be within 0..1")
        if times is not None and times < 0:
            raise ValueError("times must be >= 0")
        with self._lock:
            self._fault_seq += 1
            kind = fault or str(status)
            f = Fault(
                id=f"f{self._fault_seq}-{kind}", status=status, kind=fault, rate=rate, times=times,
                after=after, path=path, headers=dict(headers or {}), body=body, content_type=content_type,
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
        """A JSON-able snapshot of the counters."""
        with self._lock:
            c = self._counters
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
                "faults_fired": dict(c.faults_fired),
                "max_concurrent_inference": c.max_concurrent_inference,
            }

    def reset_counters(self) -> None:
        """Zero every counter (keys, accounts, credits and faults are kept)."""
        with self._lock:
            self._counters = _Counters()
