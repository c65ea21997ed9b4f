"""The data behind :class:`~airflow_provider_pioneer.testing.state.EmulatorState` and its one lock.

:class:`StateBase` holds every field of the emulator's state (accounts, keys, limits, settings,
faults, counters) and the few helpers the other parts of the state share; the methods live in
rooms beside it: ``state.py`` (keys, request checks, billing, faults), ``state_settings.py``
(what tests change at run time), ``state_counters.py`` (what they read back).
"""

from __future__ import annotations

import random
import secrets
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from airflow_provider_pioneer.testing.billing import Account
from airflow_provider_pioneer.testing.config import DEFAULT, EmulatorConfig
from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.faults import Fault
from airflow_provider_pioneer.testing.key_variants import KeyVariants
from airflow_provider_pioneer.testing.lifecycle import LifecycleStore
from airflow_provider_pioneer.testing.limiters import LimiterPool
from airflow_provider_pioneer.testing.limits import HourlyLog, SlidingPeak, TokenBucket

__all__ = ["BOOTSTRAP_KEY_NAME", "ApiKey", "Counters", "StateBase", "Usage"]

BOOTSTRAP_KEY_NAME = "bootstrap"
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
class Usage:
    """Per-account traffic counters: ``/inference`` requests per 60 s window, 429s of the limiter."""

    sent: SlidingPeak = field(default_factory=SlidingPeak)
    admitted: SlidingPeak = field(default_factory=SlidingPeak)
    rate_limited: int = 0


@dataclass
class Counters:
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
    usage: dict[str, Usage] = field(default_factory=dict)  # by account id


class StateBase:
    """The fields of one emulator's state and the helpers its rooms share (see the module docstring).

    :param config: start-up settings (see :class:`~airflow_provider_pioneer.testing.state.EmulatorState`).
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
        self._counters = Counters()
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

    def _too_many(self, detail: str, headers: dict[str, str]) -> AuthError:
        if not self.profile.coded_errors:
            return AuthError(429, detail, headers)
        headers = {
            **headers,
            "X-RateLimit-Scope": _RATE_LIMITED["scope"],
            "X-RateLimit-Code": _RATE_LIMITED["code"],
        }
        return AuthError(429, detail, headers, body={"detail": detail, **_RATE_LIMITED})

    def _need_readiness(self, what: str) -> None:
        if not self.profile.model_readiness:
            raise ValueError(f"{what} needs api_profile='current'")
