"""All mutable state of the Pioneer emulator, in plain Python behind one lock.

The HTTP layer (``app.py``, ``transport.py``) and the admin API (``admin_calls.py``) only call
methods of :class:`EmulatorState`; nothing here knows about FastAPI, so every behaviour (billing,
revocation, rate limits, model readiness, faults, counters) is implemented once. Its rooms: this
module (keys, request checks, billing, faults), ``state_base.py`` (the fields, one lock),
``state_settings.py`` (run-time settings), ``state_counters.py`` (counters). The arithmetic lives in
small helpers: settings in ``config.py``, money in ``billing.py``, rate limits in ``limits.py`` and
``limiters.py`` (the ``/inference`` limiter's models), the model catalogue in ``catalog.py``,
faults in ``faults.py``, and what differs between API generations in ``profiles.py``.

Billing rule: the token count of a text is its number of whitespace-separated words
(``len(text.split())``); a request costs the sum over its texts.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from airflow_provider_pioneer.testing import billing, catalog, faults
from airflow_provider_pioneer.testing.billing import CEILING_CODES, CREDIT_CODES, Account, count_tokens
from airflow_provider_pioneer.testing.catalog import BASE_MODELS
from airflow_provider_pioneer.testing.config import DEFAULT, EmulatorConfig, check_money_settings
from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.faults import BAD_RESULTS, ECHO_ENVELOPES, FAULT_KINDS, Fault, FaultSpec
from airflow_provider_pioneer.testing.header_styles import restyle
from airflow_provider_pioneer.testing.limits import HourlyLog, TokenBucket, retry_after
from airflow_provider_pioneer.testing.state_base import BOOTSTRAP_KEY_NAME, ApiKey, Usage
from airflow_provider_pioneer.testing.state_counters import StateCounters
from airflow_provider_pioneer.testing.state_settings import StateSettings

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
    "FaultSpec",
    "TokenBucket",
    "count_tokens",
]

#: Current profile: fine-tuned model ids starting with this exist but are not servable (409).
UNSERVABLE_PREFIX = "job_unservable"


class EmulatorState(StateSettings, StateCounters):
    """Accounts, keys, credits, limits, faults and counters of one emulator (thread-safe).

    :param config: start-up settings; the default account gets ``config.credits``,
        ``config.spend_cap_tokens`` / ``config.credit_ceiling_tokens`` and a bootstrap key named
        ``"bootstrap"``.

    The fields and ``__init__`` are :class:`~airflow_provider_pioneer.testing.state_base.StateBase`'s;
    the run-time settings ``state_settings.py``'s, the counters ``state_counters.py``'s.
    """

    # -- accounts and keys -------------------------------------------------------------------------
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
            return self._rate_headers(self._bucket_id(key))

    def _rate_headers(self, scope: str) -> dict[str, str]:
        """The budget of ``scope`` in the configured style (the caller holds the lock)."""
        if not self._headers:
            return {}
        pool = self._limits
        window = 60.0 if pool.model == "token_bucket" else pool.window_s  # a bucket's limit is per minute
        return restyle(pool.headers(scope), self.config.rate_limit_header_style, window)

    def _bucket_id(self, key: ApiKey) -> str:
        return key.account_id if self.profile.rate_limit_scope == "account" else key.id

    def _admit_inference(self, key: ApiKey) -> None:
        usage = self._counters.usage.setdefault(key.account_id, Usage())
        usage.sent.add()
        scope = self._bucket_id(key)
        wait = self._limits.hit(scope)
        if wait > 0:
            usage.rate_limited += 1
            self._counters.rate_limited += 1
            headers = {
                "Retry-After": retry_after(wait),
                **self._rate_headers(scope),
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
    def inject(self, spec: FaultSpec) -> str:
        """Register a fault (see :class:`~airflow_provider_pioneer.testing.faults.FaultSpec`) and
        return its id (also the key of ``counters()["faults_fired"]``).

        :raises ValueError: a spec that describes no fault (:func:`~airflow_provider_pioneer.testing.faults.validate`).
        """
        faults.validate(spec)
        if spec.fault == "echo_key" and spec.status is None:
            spec = replace(spec, status=401)
        with self._lock:
            self._fault_seq += 1
            fields = {**vars(spec), "headers": dict(spec.headers or {})}
            fields["indices"] = None if spec.indices is None else list(spec.indices)
            f = Fault(**fields, id=f"f{self._fault_seq}-{spec.fault or spec.status}")
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
