"""Client-side pacing shared by every thread that uses one client.

Two things decide when the next request may leave:

* a *gate*: the moment a ``Retry-After`` lets us send again. One 429 closes it
  for every thread, so a pool of workers backs off together instead of each
  discovering the limit on its own (and paying a 429 for it);
* an optional *token bucket* at ``requests_per_minute``: requests leave at a
  steady spacing, so a run reaches the API's limit without living on 429s.
  On a 429 the rate drops by a tenth and then climbs back, one hundredth of
  the configured rate per accepted request, to the configured rate.

Pure Python, no I/O: ``clock`` and ``sleep`` are injectable for unit tests.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

__all__ = ["Pacer"]


class Pacer:
    """Decides when each request may be sent.

    :param requests_per_minute: steady rate to pace at; ``None`` paces only by ``Retry-After``.
    :param burst: requests that may leave back to back after an idle spell (default 1: smooth).
    :param clock: monotonic clock, seconds.
    :param sleep: how to wait, seconds.
    """

    #: Lowest fraction of the configured rate that repeated 429s can push us to.
    MIN_RATE_FRACTION = 0.25

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if requests_per_minute is not None and requests_per_minute <= 0:
            raise ValueError("requests_per_minute must be positive (or None for no client-side limit).")
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._configured = None if requests_per_minute is None else requests_per_minute / 60.0
        self._rate = self._configured
        self._burst = max(1, burst)
        self._gate_until = 0.0
        # The theoretical arrival time of the next request (GCRA): each
        # reservation pushes it one interval further.
        self._next_slot = 0.0

    @property
    def rate_per_minute(self) -> float | None:
        """Current pacing rate in requests per minute (lower than configured right after a 429)."""
        with self._lock:
            return None if self._rate is None else self._rate * 60.0

    def acquire(self, deadline: float | None = None) -> bool:
        """Block until a request may be sent; reserve its slot.

        :param deadline: monotonic time after which waiting is pointless.
        :return: ``False`` (without reserving) when the wait would pass ``deadline``.
        """
        while True:
            with self._lock:
                now = self._clock()
                reserve = self._gate_until <= now
                if not reserve:
                    # Closed by a Retry-After: wait for it to open and only then take a slot, so
                    # the threads it held do not all leave at the instant it ends.
                    start = self._gate_until
                elif self._rate is not None:
                    # GCRA: `tat` is when this request would leave at a perfectly steady rate;
                    # it may leave up to `burst - 1` intervals early.
                    interval = 1.0 / self._rate
                    tat = max(self._next_slot, now)
                    start = max(now, tat - (self._burst - 1) * interval)
                else:
                    start = now
                if deadline is not None and start > deadline:
                    return False
                if reserve and self._rate is not None:
                    self._next_slot = tat + interval
            wait = start - self._clock()
            if wait > 0:
                self._sleep(wait)
            if reserve:
                with self._lock:
                    if self._gate_until <= self._clock():
                        return True
                # A 429 closed the gate while this thread waited for its slot: wait for the gate too.

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (retry backoffs wait here too, so a stoppable pacer ends them early)."""
        if seconds > 0:
            self._sleep(seconds)

    def observe(self, status: int, headers: Mapping[str, str]) -> None:
        """See every response's status and headers (rate-limit headers); this pacer needs none."""

    def on_success(self) -> None:
        """Creep the rate back toward the configured rate after a 429 slowed it."""
        with self._lock:
            if self._rate is not None and self._configured is not None and self._rate < self._configured:
                self._rate = min(self._configured, self._rate + self._configured / 100.0)

    def hold(self, seconds: float) -> None:
        """Let no request leave, from any thread, for ``seconds`` (a ``Retry-After``)."""
        if seconds > 0:
            with self._lock:
                self._gate_until = max(self._gate_until, self._clock() + seconds)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429 arrived: close the gate for ``retry_after`` seconds and slow the steady rate."""
        if retry_after is not None:
            self.hold(retry_after)
        with self._lock:
            if self._rate is not None and self._configured is not None:
                floor = self._configured * self.MIN_RATE_FRACTION
                self._rate = max(floor, self._rate * 0.9)
