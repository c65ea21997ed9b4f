"""Progress lines: the first as soon as the first batch is written, then one every ``interval``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Progress"]

#: Shortest time a rate is measured over before a line reports it. Over a few milliseconds (the
#: first batch answered at once) a rate says nothing: "3946.2 items/s, ETA 0s" for 64 items.
MIN_RATE_WINDOW_S = 1.0


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"


class Progress:
    """Logs ``done/total, items/s, ETA; requests, retries, 429s; pace`` in one short line.

    The first line comes as soon as the first batch is written (a run that takes minutes shows
    life at once), then one every ``interval`` seconds while the run waits or writes. A line gives
    a rate and an ETA only once one is known (:attr:`rate_known`); before, it says why not.

    :param log: where the lines go (the task's logger).
    :param total: inputs in this run, checkpointed ones included.
    :param skipped: inputs already done by an earlier attempt.
    :param stats: returns the client's ``{attempts, retries, rate_limited, ...}`` snapshot.
    :param interval: seconds between lines.
    :param clock: monotonic clock.
    :param pace: returns a few words on the client's pace (e.g. ``pace 1,200/min``: requests per minute), or ``None``.
    :param hold: seconds the client is held from sending (a ``Retry-After``): added to the ETA.
    """

    def __init__(
        self,
        log: logging.Logger | Any,
        total: int,
        skipped: int,
        stats: Callable[[], dict[str, Any]],
        interval: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        pace: Callable[[], str | None] = lambda: None,
        hold: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self._log = log
        self.total = total
        self.skipped = skipped
        self.done = skipped
        self._stats = stats
        self._interval = interval
        self._clock = clock
        self.pace = pace
        self.hold = hold
        self.started = clock()
        self._next = self.started + interval
        self._first = True

    def advance(self, n: int) -> None:
        """``n`` more items are written; the first batch gets its line at once."""
        self.done += n
        if self._first:
            self._first = False
            self._next = self._clock() + self._interval
            self.log_line()
        else:
            self.maybe_log()

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    @property
    def rate(self) -> float:
        """Items per second sent in this attempt (checkpointed items excluded)."""
        elapsed = self.elapsed
        return (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0

    @property
    def rate_known(self) -> bool:
        """Whether :attr:`rate` measures something: items written in this attempt, over at least
        :data:`MIN_RATE_WINDOW_S` seconds."""
        return self.done > self.skipped and self.elapsed >= MIN_RATE_WINDOW_S

    def maybe_log(self) -> None:
        now = self._clock()
        if now < self._next:
            return
        self._next = now + self._interval
        self.log_line()

    def log_line(self) -> None:
        if self.rate_known:
            rate = self.rate
            # A hold (a Retry-After, a spent budget) delays everything left by its length.
            eta = (self.total - self.done) / rate + self.hold()
            speed = f"{rate:.1f} items/s, ETA {_duration(eta)}"
        elif self.done == self.skipped:
            speed = "no batch answered yet"
        else:
            speed = "rate not known yet"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        stats = self._stats()
        pace = self.pace()
        self._log.info(
            "Pioneer inference: %d/%d items (%.1f%%), %s; %d requests, %d retries, %d x 429%s",
            self.done,
            self.total,
            pct,
            speed,
            stats.get("attempts", 0),
            stats.get("retries", 0),
            stats.get("rate_limited", 0),
            f"; {pace}" if pace else "",
        )
