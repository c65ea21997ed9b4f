"""What a task delivered while it was free to send, and how long its answers take (no I/O).

A ``Retry-After`` hold is not crowding: a task that waited out a hold delivered little over the
last seconds, and measured over the hold it would take itself for one of many and crawl (the
benchmark's tail). :class:`~airflow_provider_pioneer.pacing.rate.AdaptiveRate` asks this for
what the task delivered when a 429 comes and when it checks it keeps up with the headers.
"""

from __future__ import annotations

from collections import deque

__all__ = ["Delivery", "RoundTrip"]


class Delivery:
    """Successes per second over the last ``window_s``, the time held left out.

    :param window_s: how far back successes count.
    """

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._successes: deque[float] = deque()
        self._holds: deque[tuple[float, float]] = deque()

    def __bool__(self) -> bool:
        """Whether any success is counted (nothing delivered yet says nothing of a task's share)."""
        return bool(self._successes)

    def on_success(self, now: float) -> None:
        self._successes.append(now)

    def on_held(self, start: float, until: float) -> None:
        """No request could leave from ``start`` to ``until`` (a ``Retry-After``)."""
        if self._holds and start <= self._holds[-1][1]:
            start = min(start, self._holds[-1][0])
            until = max(until, self._holds.pop()[1])
        while self._holds and self._holds[0][1] < start - self.window_s:
            self._holds.popleft()
        self._holds.append((start, until))

    def held_lately(self, now: float) -> bool:
        """Whether a hold ended within the last ``window_s``."""
        return bool(self._holds) and self._holds[-1][1] > now - self.window_s

    def rate(self, now: float, first_send: float | None) -> float:
        """Successes per second the task was free to send, since ``first_send`` at the earliest."""
        while self._successes and self._successes[0] < now - self.window_s:
            self._successes.popleft()
        start = max(now - self.window_s, first_send if first_send is not None else now)
        while self._holds and self._holds[0][1] < start:
            self._holds.popleft()
        held = sum(max(0.0, min(until, now) - max(begin, start)) for begin, until in self._holds)
        # The first successes of a run come in a burst: measure over at least a quarter second.
        return len(self._successes) / max(now - start - held, 0.25)


class RoundTrip:
    """A task's round trip, smoothed, and its mean deviation, as TCP keeps them (RFC 6298).

    :param guess: seconds, until the first answer (a loopback-to-cloud guess).
    """

    def __init__(self, guess: float = 0.05) -> None:
        self.smoothed = guess
        self.deviation = 0.0

    def observe(self, rtt: float) -> None:
        if rtt >= 0:
            error = min(rtt, 5.0) - self.smoothed
            self.smoothed += 0.125 * error
            self.deviation += 0.25 * (abs(error) - self.deviation)

    @property
    def worst(self) -> float:
        """How old an answer may be: the smoothed round trip plus four deviations (TCP's RTO): a
        busy machine's slow answers, not only its typical ones, are what a margin must cover."""
        return self.smoothed + 4.0 * self.deviation
