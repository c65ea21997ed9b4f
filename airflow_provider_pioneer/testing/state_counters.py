"""What tests read back from a running emulator: request, status, billing and traffic counters.

Methods of :class:`~airflow_provider_pioneer.testing.state.EmulatorState` (through
:class:`StateCounters`), each behind the state's one lock.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_pioneer.testing.state_base import Counters, StateBase, Usage

__all__ = ["StateCounters"]


class StateCounters(StateBase):
    """The emulator's counters (a part of :class:`EmulatorState`)."""

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
            usage = self._counters.usage.get(account.id, Usage())
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
            self._counters = Counters()
        self.lifecycle.reset_counters()
