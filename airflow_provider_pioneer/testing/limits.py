"""Rate-limit arithmetic of the emulator: token buckets, a per-hour log and a sliding-window peak.

Pure and lock-free: :class:`~airflow_provider_pioneer.testing.state.EmulatorState` calls these
under its own lock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

__all__ = ["HourlyLog", "SlidingPeak", "TokenBucket", "reset_seconds", "retry_after"]


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least 1.

    Rounded up, but a wait a hair over a whole second (a limiter adds 1 us so that a request sent
    right at its end is let through) stays that second.
    """
    return str(max(1, math.ceil(seconds - 1e-5)))


def reset_seconds(seconds: float) -> int:
    """An ``X-RateLimit-Reset`` value: whole seconds rounded up, 0 when the time is already here."""
    return math.ceil(seconds - 1e-9) if seconds > 0 else 0


class TokenBucket:
    """Classic token bucket; ``take`` returns 0 when allowed, else seconds until a token is available.

    The ``token_bucket`` model of :mod:`~airflow_provider_pioneer.testing.limiters` (``hit`` is
    ``take``).

    :param per_minute: refill rate.
    :param burst: capacity (None: one second's worth, at least 1).
    :param clock: seconds, any origin (a simulator passes its own).
    :param window_in_limit: send ``X-RateLimit-Limit: <per_minute>;w=60`` rather than a bare number.
    """

    model = "token_bucket"

    def __init__(
        self,
        per_minute: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        window_in_limit: bool = False,
    ) -> None:
        self.per_minute = per_minute
        self.rate = per_minute / 60.0
        self.capacity = burst if burst is not None else max(1.0, self.rate)
        self.tokens = self.capacity
        self.window_in_limit = window_in_limit
        self._clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> float:
        self._refill()
        if self.tokens >= 1.0 - 1e-9:  # the float error of a refill after exactly the wait it gave
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def hit(self) -> float:
        return self.take()

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers describing the bucket right now (call right after ``take``).

        ``Limit`` is the per-minute limit, ``Remaining`` the requests that may be sent at once
        (whole tokens left), ``Reset`` the whole seconds until the bucket is full again.
        """
        self._refill()
        limit = str(int(self.per_minute))
        return {
            "X-RateLimit-Limit": f"{limit};w=60" if self.window_in_limit else limit,
            "X-RateLimit-Remaining": str(int(self.tokens)),
            "X-RateLimit-Reset": str(reset_seconds((self.capacity - self.tokens) / self.rate)),
        }


class HourlyLog:
    """Events of the last rolling hour (e.g. key creations); ``wait`` says how long until one more fits."""

    WINDOW = 3600.0

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def _trim(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.WINDOW:
            self.times.popleft()

    def count(self) -> int:
        self._trim(time.monotonic())
        return len(self.times)

    def wait(self, limit: int) -> float:
        """0 when one more event fits in the rolling hour, else the seconds until it does."""
        now = time.monotonic()
        self._trim(now)
        if len(self.times) < limit:
            return 0.0
        return self.times[len(self.times) - limit] + self.WINDOW - now

    def add(self) -> None:
        self.times.append(time.monotonic())


class SlidingPeak:
    """Most events seen in any window of ``window`` seconds (e.g. requests per minute).

    :param window: window length in seconds.
    """

    def __init__(self, window: float = 60.0) -> None:
        self.window = window
        self.times: deque[float] = deque()
        self.peak = 0
        self.total = 0

    def add(self) -> None:
        now = time.monotonic()
        self.times.append(now)
        while self.times[0] <= now - self.window:
            self.times.popleft()
        self.total += 1
        self.peak = max(self.peak, len(self.times))

    def reset(self) -> None:
        self.times.clear()
        self.peak = self.total = 0
