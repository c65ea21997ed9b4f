"""What tests change in a running emulator: credits, caps, latency, limits, readiness, body size.

Methods of :class:`~airflow_provider_pioneer.testing.state.EmulatorState` (through
:class:`StateSettings`), each behind the state's one lock; the admin API calls them
(``admin_calls.py``).
"""

from __future__ import annotations

from airflow_provider_pioneer.testing.config import check_codes, check_money_settings
from airflow_provider_pioneer.testing.state_base import StateBase

__all__ = ["StateSettings"]


class StateSettings(StateBase):
    """The emulator's run-time settings (a part of :class:`EmulatorState`)."""

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

    def latency_seconds(self, n_texts: int) -> float:
        return (self.config.latency_ms + self.config.per_text_latency_ms * n_texts) / 1000.0
