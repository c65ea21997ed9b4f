"""The pacer shared by every thread that uses one client.

Three things decide when the next request may leave:

* a *gate*: the moment a ``Retry-After`` lets us send again. One 429 closes it for every
  thread, so a pool of workers backs off together instead of each discovering the limit on
  its own (and paying a 429 for it). After a 429 the gate stays closed a little longer, by a
  random fraction, so tasks in other processes held by the same 429 storm do not all
  restart at the same instant;
* the server's budget: while ``X-RateLimit-Remaining`` says it is spent, nothing leaves
  before the reset;
* a steady *pace* (GCRA spacing) at the rate a controller from
  :mod:`airflow_provider_pioneer.pacing.rate` chooses, so a run reaches the account's limit
  without living on 429s.

Pure Python, no I/O: ``clock``, ``sleep``, the wall clock and the random source are
injectable for unit tests.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Mapping

from airflow_provider_pioneer.pacing.headers import parse_rate_limit_headers
from airflow_provider_pioneer.pacing.rate import DOCUMENTED_REQUESTS_PER_MINUTE, AdaptiveRate, StaticRate

__all__ = ["Pacer", "slot_time"]

log = logging.getLogger(__name__)


def slot_time(
    next_slot: float,
    booked: tuple[float, float],
    rate: float,
    now: float,
    reset: float | None,
    pulled_to: float | None,
) -> tuple[float, float | None]:
    """When the next request may leave at ``rate`` (GCRA), and the reset it was pulled in to.

    :param next_slot: the slot after the last booked one, at the pace it was booked at.
    :param booked: ``(slot, rate)`` of the last booking: at a higher pace now, the next slot
        comes as much sooner.
    :param reset: when a fixed window's budget is whole again (``AdaptiveRate.reset_at``), if known.
    :param pulled_to: the reset a slot was last pulled in to.
    """
    last, booked_rate = booked
    if rate > booked_rate > 0:
        tat = max(last + (next_slot - last) * booked_rate / rate, now)
    else:
        tat = max(next_slot, now)
    # The same reset, narrowed by later answers, moves by less than half a second; the next
    # window's is a whole window later.
    if reset is not None and (pulled_to is None or abs(reset - pulled_to) > 0.5) and tat > reset:
        # The budget is whole again at the reset: a slot booked at the slow pace of a spent window
        # does not wait past it. One slot per reset: the next ones wait for the pace the new
        # window's answers set. Pulled in again and again, every thread of a task left at the
        # reset together (8 requests within 3 ms per task, P = 8: 64 of a window's 100 in its
        # first second), and all of them at a reset estimated early: 5% of requests were 429s.
        return max(reset, now), reset
    return tat, pulled_to


class Pacer:
    """Decides when each request may be sent; shared by every thread of one client.

    The client calls :meth:`acquire` before each attempt, :meth:`observe` after every
    response, then :meth:`on_success`, :meth:`on_rate_limited` (a 429 that is not a spend cap)
    or :meth:`hold` (a ``Retry-After`` on another status), and waits between retries with
    :meth:`sleep`.

    :param requests_per_minute: the most to send per minute (a ceiling), or ``None``: adapt
        from the documented limit (5,000/min), the server's rate-limit headers and 429s.
        With ``adaptive=False``: a fixed pace (``None``: pace only by ``Retry-After``).
    :param adaptive: adapt to the account's budget (the default); ``False`` is the fixed pace
        of earlier releases.
    :param burst: requests that may leave back to back after an idle spell (default 1: smooth).
    :param clock: monotonic clock, seconds.
    :param sleep: how to wait, seconds.
    :param wall_clock: Unix time, to read a rate-limit reset given as a timestamp or a date.
    :param rng: random source for the jitter.
    :param documented_requests_per_minute: where the adaptive pace starts without a ceiling.
    """

    #: Slots are booked at most this far ahead (or one interval): threads further back in
    #: line wait unbooked, so a faster pace applies to them at once.
    BOOK_AHEAD_S = 0.1
    #: A thread waiting unbooked looks at the pace again at least this often: a slot computed
    #: at a pace that has since risen (a lone low reading, a 429 before the first answers) held a
    #: shard's every thread for 12 s in the benchmark (scenario D, 1,200/min, P = 16).
    RECHECK_S = 0.5
    #: Lowest fraction of the configured rate that repeated 429s push a fixed pace to.
    MIN_RATE_FRACTION = StaticRate.MIN_RATE_FRACTION

    def __init__(
        self,
        requests_per_minute: float | None = None,
        *,
        adaptive: bool = True,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        wall_clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        documented_requests_per_minute: float = DOCUMENTED_REQUESTS_PER_MINUTE,
    ) -> None:
        if requests_per_minute is not None and not requests_per_minute > 0:
            raise ValueError(
                "requests_per_minute must be positive (or None to adapt to the account's limit by itself)."
            )
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep
        self._wall_clock = wall_clock
        self._rng = rng or random.Random()
        self.adaptive = adaptive
        self._control: AdaptiveRate | StaticRate
        if adaptive:
            self._control = AdaptiveRate(
                None if requests_per_minute is None else requests_per_minute / 60.0,
                documented=documented_requests_per_minute / 60.0,
                rng=self._rng,
            )
        else:
            self._control = StaticRate(requests_per_minute)
        self._burst = max(1, burst)
        self._gate_until = 0.0
        # The theoretical arrival time of the next request (GCRA): each
        # reservation pushes it one interval further.
        self._next_slot = 0.0
        # The last reserved slot and the pace it was booked at: at a higher pace now, the next
        # slot comes as much sooner.
        self._booked = (-math.inf, 0.0)
        # The reset a slot was last pulled in to (see slot_time).
        self._pulled_to: float | None = None
        # When this thread's current request left: tells a 429 of the current episode from a new one.
        self._local = threading.local()

    # -- what the operator reports ----------------------------------------------------------------

    @property
    def rate_per_minute(self) -> float | None:
        """Current pace in requests per minute (``None``: only ``Retry-After`` paces)."""
        with self._lock:
            rate = self._control.rate(self._clock())
        return None if rate is None else rate * 60.0

    @property
    def ceiling_per_minute(self) -> float | None:
        """The user's ceiling (adaptive) or fixed pace, requests per minute; ``None`` if none."""
        if isinstance(self._control, AdaptiveRate):
            return None if self._control.ceiling is None else self._control.ceiling * 60.0
        return None if self._control.configured is None else self._control.configured * 60.0

    def describe(self) -> str:
        """The pace, short enough for a progress line: ``pace 4,850/min``, and a hold if one is on
        (``held 37 s by the server's Retry-After``)."""
        with self._lock:
            now = self._clock()
            text = self._control.describe(now)
            held, why = self._held(now)
        return f"{text}; held {held:.0f} s {why}" if held >= 1 else text

    def held_for(self) -> float:
        """Seconds from now until any request may leave (0 when none is held)."""
        with self._lock:
            return self._held(self._clock())[0]

    def _held(self, now: float) -> tuple[float, str]:
        gate = self._gate_until - now
        budget = self._control.not_before(now) - now
        if gate >= budget:
            return max(0.0, gate), "by the server's Retry-After"
        return budget, "until the server's rate-limit budget resets"

    @property
    def pace_source(self) -> str:
        """What sets the pace now: ``server headers``, ``429 feedback``, ``starting``,
        ``documented limit``, ``advertised limit``, ``ceiling`` or ``fixed``."""
        with self._lock:
            return self._control.source(self._clock())

    # -- the protocol the client follows ------------------------------------------------------------

    def acquire(self, deadline: float | None = None) -> bool:
        """Block until a request may be sent; reserve its slot.

        :param deadline: monotonic time after which waiting is pointless.
        :return: ``False`` (without reserving) when the wait would pass ``deadline``.
        """
        while True:
            with self._lock:
                now = self._clock()
                control = self._control
                blocked_until = max(self._gate_until, control.not_before(now))
                reserve = blocked_until <= now
                rate = control.rate(now) if reserve else None
                if not reserve:
                    # Closed by a Retry-After or a spent budget: wait for it to open and only then
                    # take a slot, so the threads it held do not all leave at the instant it ends.
                    start = blocked_until
                elif rate is not None:
                    # GCRA: `tat` is when this request would leave at a perfectly steady rate;
                    # it may leave up to `burst - 1` intervals early.
                    interval = control.spacing(rate)
                    tat, pulled = slot_time(
                        self._next_slot, self._booked, rate, now, control.reset_at(now), self._pulled_to
                    )
                    start = max(now, tat - (self._burst - 1) * interval)
                else:
                    start = now
                if deadline is not None and start > deadline:
                    return False
                if reserve and rate is not None and start - now > (ahead := max(interval, self.BOOK_AHEAD_S)):
                    # Far back in line: book nothing yet and look again when nearer. A slot
                    # booked now, at today's pace, could be far later than the pace allows by
                    # then (it grows while starting, and with the account's budget).
                    reserve = False
                    start = min(start - ahead, now + self.RECHECK_S)
                if reserve and rate is not None:
                    self._booked = (tat, rate)
                    self._next_slot = tat + interval
                    self._pulled_to = pulled
            wait = start - self._clock()
            if wait > 0:
                self._sleep(wait)
            if reserve:
                with self._lock:
                    now = self._clock()
                    if self._gate_until <= now:
                        self._local.sent_at = now
                        self._control.on_sent(now)
                        return True
                # A 429 closed the gate while this thread waited for its slot: wait for the gate too.

    def observe(self, status: int, headers: Mapping[str, str] | None) -> None:
        """Read the account's budget from a response's ``X-RateLimit-*`` headers (any status)."""
        info = parse_rate_limit_headers(headers, self._wall_clock)
        if info is None:
            return
        sent_at = getattr(self._local, "sent_at", None)
        with self._lock:
            self._control.on_headers(info, self._clock(), sent_at)
            notices, self._control.notices = self._control.notices, []
        for notice in notices:
            log.warning("Pioneer pacing: %s", notice)

    def on_success(self) -> None:
        """A request succeeded: the pace may grow."""
        sent_at = getattr(self._local, "sent_at", None)
        with self._lock:
            self._control.on_success(self._clock(), sent_at)

    def hold(self, seconds: float) -> None:
        """Let no request leave, from any thread, for ``seconds`` (a ``Retry-After``)."""
        if seconds > 0:
            with self._lock:
                now = self._clock()
                self._close_gate(now, now + seconds)

    def on_rate_limited(self, retry_after: float | None) -> None:
        """A 429 arrived: close the gate for ``retry_after`` seconds (plus jitter) and slow the pace.

        Many threads' 429s from one overload are one episode and slow the pace once.
        """
        sent_at = getattr(self._local, "sent_at", None)
        with self._lock:
            now = self._clock()
            self._control.on_rate_limited(now, sent_at)
            if retry_after is not None and retry_after > 0:
                self._close_gate(now, now + retry_after + self._control.gate_jitter(retry_after))

    def _close_gate(self, now: float, until: float) -> None:
        """No send from any thread before ``until`` (under the lock); the controller learns of the hold."""
        self._gate_until = max(self._gate_until, until)
        self._control.on_held(now, self._gate_until)

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` with the injected sleep (a retry backoff; a stoppable pacer ends it early)."""
        if seconds > 0:
            self._sleep(seconds)
