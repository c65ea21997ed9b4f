"""Progress lines at a steady cadence, and the numbers for the final summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress"]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Logs ``done/total, items/s, ETA, retries, 429s`` every ``interval`` seconds.

    :param log: where the lines go (the task's logger).
    :param total: inputs in this run, checkpointed ones included.
    :param skipped: inputs already done by an earlier attempt.
    :param stats: returns the client's ``{attempts, retries, rate_limited, ...}`` snapshot.
    :param interval: seconds between lines.
    :param clock: monotonic clock.
    """

    def __init__(
        self,
        log: logging.Logger | Any,
        total: int,
        skipped: int,
        stats: Callable[[], dict[str, Any]],
        interval: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self.total = total
        self.skipped = skipped
        self.done = skipped
        self._stats = stats
        self._interval = interval
        self._clock = clock
        self.started = clock()
        self._next = self.started + interval

    def advance(self, n: int) -> None:
        self.done += n

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def rate(self) -> float:
        """Items per second sent in this attempt (checkpointed items excluded)."""
        elapsed = self.elapsed
        return (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0

    def maybe_log(self) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._interval
        self.log_line()

    def log_line(self) -> None:
        rate = self.rate
        left = self.total - self.done
        eta = _duration(left / rate) if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        stats = self._stats()
        self._log.info(
            "Pioneer inference: %d/%d items (%.1f%%), %.1f items/s, ETA %s, %d requests, %d retries, %d x 429",
            self.done,
            self.total,
            pct,
            rate,
            eta,
            stats.get("attempts", 0),
            stats.get("retries", 0),
            stats.get("rate_limited", 0),
        )
