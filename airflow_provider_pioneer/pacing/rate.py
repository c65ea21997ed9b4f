"""How fast to send: the rate controller behind :class:`~airflow_provider_pioneer.pacing.Pacer`.

Pure logic, no locks, no I/O: every method takes ``now`` (a monotonic time) so tests drive
it with a fake clock. The :class:`Pacer` holds the lock and does the waiting.

Pioneer counts ``/inference`` requests per *account*: every task on it (mapped shards on
other workers, other DAGs) draws on one budget, and none knows how many others there are.
:class:`AdaptiveRate` needs no tuning and follows one of two rules, whichever applies:

* **The server says what is left** (``X-RateLimit-Remaining`` and ``-Reset``, as far as
  :mod:`~airflow_provider_pioneer.pacing.belief` believes them): spend it evenly until the
  reset, shared with the other tasks::

      pace = (remaining - margin) / (time to reset * sharers)

  ``sharers`` is how many tasks draw on the account (:mod:`~airflow_provider_pioneer.pacing.share`).
  A reset sooner than two round trips is spread over two round trips (what was left an answer
  ago is all this task can know), counting what a server that frees as it goes frees meanwhile.
  On a window the rule spends the window's budget by its end; on a token bucket and a sliding
  window it settles where the account draws what the server frees. An about empty budget
  paces at what frees, over the sharers.
* **Otherwise (no headers)**: additive increase, multiplicative decrease on 429. A 429
  *episode* (every 429 of requests sent before the last decrease) decreases the pace once,
  to ``DECREASE`` of what the task delivered; between episodes the pace grows by the same
  small amount for every task (so tasks converge to equal shares), and that amount doubles
  for every few seconds without a 429 (a task left alone takes over in seconds). After a 429
  with headers, the pace is the lower of the two rules.

A user's ``requests_per_minute`` is a ceiling and where the pace starts: the pace goes lower
only when the server says so (a 429, or headers). Without one, the pace starts at a sixteenth
of the documented limit and doubles until the first answers or the first 429.
:class:`StaticRate` (``pacing/fixed.py``) is the fixed pace of earlier releases.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import deque

from airflow_provider_pioneer.pacing.belief import HeaderBelief, Reading, WindowEnd
from airflow_provider_pioneer.pacing.delivery import Delivery, RoundTrip
from airflow_provider_pioneer.pacing.fixed import StaticRate
from airflow_provider_pioneer.pacing.headers import RateLimitHeaders
from airflow_provider_pioneer.pacing.share import AccountShare

__all__ = ["DOCUMENTED_REQUESTS_PER_MINUTE", "AdaptiveRate", "StaticRate"]

#: Pioneer's documented ``POST /inference`` limit per account (CHANGES-2026-08: was 1,200).
DOCUMENTED_REQUESTS_PER_MINUTE = 5000.0


class AdaptiveRate:
    """The default pace: the server's budget when it tells it, 429 feedback otherwise (module docstring).

    Rates are in requests per second.

    :param ceiling: never faster than this (the user's ``requests_per_minute`` / 60), or ``None``.
    :param documented: the documented account limit: the top of the pace without a ceiling.
    :param rng: random source for the jitter.
    """

    # -- without headers: AIMD ------------------------------------------------------------------
    #: Without a ceiling, the pace starts at this fraction of the documented limit: 16 tasks
    #: starting together then draw about the whole limit, not 16 times it (scenario D, P = 16).
    START_FRACTION = 1 / 16
    #: ...and doubles every this many seconds of successes until the first 429 (a lone task is
    #: at the limit in one second: scenario D, P = 1).
    START_DOUBLING_S = 0.25
    #: A 429 episode sets the pace to this fraction of what the task delivered: small steps keep
    #: the account near its limit between episodes (scenario D without headers, all P).
    DECREASE = 0.85
    #: Between episodes the pace grows by this fraction of the top per second, the same for every
    #: task, so shares converge (``test_no_shard_of_a_job_without_headers_is_left_crawling``)...
    GROWTH = 0.002
    #: ...and the growth doubles for every this many seconds without a 429: 16 tasks probe slowly
    #: (few 429s), the last task of a job is back at the limit in seconds (scenario D, tails).
    GROWTH_DOUBLING_S = 2.0
    #: Successes of the last this many seconds are what a task "delivered" when a 429 comes.
    DELIVERY_WINDOW_S = 2.0
    #: Never below this fraction of the top (one request every ~12 s at 5,000/min): a pace that
    #: can reach zero never hears that the budget came back.
    FLOOR_FRACTION = 1 / 1000

    # -- with headers ---------------------------------------------------------------------------
    #: Requests of the announced budget kept in hand, besides what the account sends in one
    #: round trip (the answer is that old): two, so rounding and one stray request never 429.
    MARGIN = 2.0
    #: A budget is spread over at least this many round trips (a reset sooner than that is "the
    #: next request fits", and what was left is known only an answer late).
    SPREAD_RTTS = 2.0
    #: Without answers for this long (and past its reset) a budget is not trusted any more.
    HEADER_TTL_S = 10.0
    #: A task sending under half of what the budget allows it for this long is warned about
    #: (``test_a_task_far_below_what_the_headers_allow_is_warned_about``).
    LAGGING_S = 30.0

    # -- both -----------------------------------------------------------------------------------
    #: Extra hold after a ``Retry-After``, at most this fraction of it, so held tasks part; small,
    #: because for a task alone every extra moment held is budget lost (legacy-limit test).
    GATE_JITTER = 0.1
    #: Each pacing interval is drawn within this fraction of its mean (tasks do not lock in step).
    SPACING_JITTER = 0.2

    def __init__(
        self,
        ceiling: float | None = None,
        *,
        documented: float = DOCUMENTED_REQUESTS_PER_MINUTE / 60.0,
        rng: random.Random | None = None,
    ) -> None:
        if ceiling is not None and not ceiling > 0:
            raise ValueError("requests_per_minute must be positive (or None to adapt by itself).")
        self.ceiling = ceiling
        self.documented = documented
        #: Upper bound of the pace: the ceiling, else the documented (or a higher advertised) limit.
        self.top = ceiling if ceiling is not None else documented
        self.floor = self.top * self.FLOOR_FRACTION
        #: The AIMD pace (used without headers).
        self.aimd = self.top if ceiling is not None else self.top * self.START_FRACTION
        self.starting = ceiling is None
        self.decreases = 0
        #: Warnings for the log (the :class:`Pacer` logs and clears them).
        self.notices: list[str] = []
        self._rng = rng or random.Random()
        self._last_decrease = -math.inf
        self._delivery = Delivery(self.DELIVERY_WINDOW_S)
        self._first_send: float | None = None
        self._sends: deque[float] = deque()  # when this task's recent requests left
        self._round_trip = RoundTrip()
        self._answered = 0  # answers of this task (a 429 too): how far it is past its start
        self._drew = 0  # this task's requests that drew on the budget, for the share estimate
        self._reading: Reading | None = None
        self._window_end = WindowEnd()
        self._header_pace: float | None = None  # what the latest reading allowed
        self._advertised: float | None = None  # Limit / window, when it is believable
        self._share = AccountShare()
        self._resume_jitter = 0.0
        self._warned: set[str] = set()
        self._belief = HeaderBelief(self._notice)
        self._lagging_since: float | None = None

    @property
    def sharers(self) -> float:
        """How many tasks this one estimates draw on the account (:class:`AccountShare`)."""
        return self._share.sharers

    def _fresh(self, now: float) -> Reading | None:
        reading = self._reading
        if reading is None or now > max(reading.seen_at + self.HEADER_TTL_S, reading.reset_at):
            return None
        return reading

    def _margin(self, reading: Reading) -> float:
        """``MARGIN`` plus what the reading does not count yet: this task's later requests, counted
        (estimated from a busy machine's 0.3-0.5 s round trip, a task alone kept a tenth of every
        100-request window unspent), and the other sharers' over a round trip, estimated."""
        pace = self._header_pace if self._header_pace is not None else self.aimd
        others = pace * (self.sharers - 1.0) * self._round_trip.worst
        if reading.sent_at is None:
            return self.MARGIN + pace * self._round_trip.worst + others
        since = reading.sent_at  # sends are in time order: count back only the ones in flight
        own = sum(1 for _ in itertools.takewhile(lambda sent: sent > since, reversed(self._sends)))
        return self.MARGIN + own + others

    def _budget_pace(self, reading: Reading, now: float) -> float:
        """``(remaining - margin) / (time to reset * sharers)``, with the floors of the docstring."""
        # The time to a fixed window's reset as of the answer: the others spend what it said was
        # left as this task does, so the pace holds until the next answer. Counted from now, a
        # task answered every few tenths of a second sped up between its answers: at P = 8 a 5-s
        # window was spent by its last half second and 3.4% of requests were 429s. A task that
        # hears less than once a second still spends what it heard of by the window's end.
        reset_in = reading.reset_at - (now if self._share.frees else max(reading.seen_at, now - 1.0))
        horizon = max(reset_in, self.SPREAD_RTTS * self._round_trip.worst)
        spare = reading.remaining - self._margin(reading)
        if self._share.frees and self._advertised is not None and horizon > reset_in:
            # Spread over round trips longer than the reset, a budget that frees as it goes (a
            # bucket a second deep) frees that much more meanwhile: not counted, a task alone on
            # a busy machine (slow answers) paced at 70% of a 1,200/min bucket.
            spare += self._advertised * (horizon - max(reset_in, 0.0))
        if spare <= 0:
            # At or below the margin the budget says only "about empty" (a sliding window at its
            # limit always is): what frees, shared, as above (else one request per round trip
            # among the sharers: enough to hear when budget frees), and at most the AIMD pace.
            frees = self._advertised if self._share.frees and self._advertised is not None else None
            return min(self.aimd, (frees or 1.0 / self._round_trip.worst) * self._share.measured)
        return spare / (horizon * self.sharers)

    def header_rate(self, now: float) -> float | None:
        """What the server's budget allows this task now; ``None`` without a fresh budget."""
        reading = self._fresh(now)
        if reading is None:
            return None
        pace = self._budget_pace(reading, now)
        if (
            self.ceiling is None
            and self._answered < self._share.FIRST_ANSWERS
            and self._first_send is not None
        ):
            # Until it knows how many share the budget, a task starts at a sixteenth of what
            # the budget allows and doubles, as it would without headers: 16 tasks starting
            # together would each take the whole budget.
            started = (now - self._first_send) / self.START_DOUBLING_S
            pace *= min(1.0, self.START_FRACTION * 2.0 ** min(started, 30.0))
        return min(pace, self._cap())

    def _cap(self) -> float:
        if self.ceiling is not None:
            return self.ceiling
        # Twice the limit: a window may be spent faster than its average, and a full bucket
        # at once; only a header gone wrong could ask for more.
        return 2.0 * max(self.documented, self._advertised or 0.0)

    def rate(self, now: float) -> float:
        """Requests per second to pace at now."""
        by_headers = self.header_rate(now)
        if by_headers is None:
            pace = self.aimd
        elif self.decreases:
            # Both signals, the lower pace: the budget says what is left, and 429s say that the
            # estimate of the sharers was too low (a busy machine's late answers, tasks joining);
            # the AIMD pace climbs back above the budget's within seconds of quiet.
            pace = min(by_headers, self.aimd)
        else:
            pace = by_headers
        if self.ceiling is not None:
            pace = min(pace, self.ceiling)
        return max(self.floor, pace)

    def not_before(self, now: float) -> float:
        """No send before this: the reset (plus jitter), while the announced budget is spent."""
        reading = self._fresh(now)
        if reading is None or reading.remaining >= 1:
            return now
        if self._share.frees and self._advertised is not None and reading.reset_at - reading.seen_at <= 1:
            # "The next request fits within a second", from a server that frees at a known rate:
            # pace at what frees (the about-empty rule), not wait out a second that every task
            # waits out and then leaves together (a sliding window at its limit: 6-9% 429s, P = 16).
            return now
        return reading.reset_at + self._resume_jitter

    def reset_at(self, now: float) -> float | None:
        """When a fixed window's budget is whole again: no pacing slot needs to wait past it.

        ``None`` when the server frees its budget as it goes (a bucket, a sliding window): its
        reset is only the next free request, and threads released together there would 429.
        """
        reading = self._fresh(now)
        return None if reading is None or self._share.frees else reading.reset_at + self._resume_jitter

    def gate_jitter(self, seconds: float) -> float:
        """Extra seconds to hold after a ``Retry-After`` of ``seconds``, so held tasks do not restart together."""
        return self._rng.uniform(0.0, self.GATE_JITTER * seconds)

    def spacing(self, rate: float) -> float:
        """Seconds to the next slot at ``rate``: jittered, so tasks pacing at one rate do not lock in step."""
        return self._rng.uniform(1.0 - self.SPACING_JITTER, 1.0 + self.SPACING_JITTER) / rate

    def source(self, now: float) -> str:
        """What decides the pace now."""
        by_headers = self.header_rate(now)
        pace = by_headers if by_headers is not None else self.aimd
        if self.ceiling is not None and self.ceiling <= pace:
            return "ceiling"
        if by_headers is not None:
            return "server headers"
        if self.starting:
            return "starting"
        if self.decreases:
            return "429 feedback"
        return "advertised limit" if self._advertised is not None else "documented limit"

    def describe(self, now: float) -> str:
        """``pace 4,850/min``: short, for progress lines (:meth:`source` says what sets it)."""
        return f"pace {self.rate(now) * 60:,.0f}/min"

    # -- signals --------------------------------------------------------------------------------

    def _notice(self, kind: str, text: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            self.notices.append(text)

    def on_headers(self, info: RateLimitHeaders, now: float, sent_at: float | None = None) -> None:
        """A response announced the account's budget."""
        if sent_at is not None:
            self._round_trip.observe(now - sent_at)
            latest = self._fresh(now)
            if latest is not None and latest.sent_at is not None and sent_at < latest.sent_at:
                # Overtaken: a request that left before the one of the reading in hand (answers
                # 20-200 ms apart on a busy machine pass each other) tells an older budget. Taken
                # as the latest, the last window's "24 left" after a new window's "99" read as 75
                # drawn by others (the estimate of the sharers doubled) and as a reset that moved
                # (a fixed window taken for one that frees): a task alone paced at 75-85% of it.
                return
        self._share.capacity = max(self._share.capacity, info.remaining)
        self._advertised = self._belief.read_limit(info, self._share.capacity)
        if self.ceiling is None and self._advertised is not None and self._advertised > self.top:
            # The server knows this account's limit better than the docs do.
            self.top = self._advertised
            self.floor = self.top * self.FLOOR_FRACTION
        reset_in = self._belief.reset_in(info, now)
        previous = self._fresh(now)
        if previous is not None:
            self._window_end.see(previous.remaining, previous.reset_at, info.remaining, now + reset_in,
                                 self._share.capacity)  # fmt: skip
        reset_at = self._window_end.reset_at(info, reset_in, now, sent_at, frees=self._share.frees)
        if previous is None or abs(reset_at - previous.reset_at) > 0.5 or info.remaining < 1:
            # A new window (or a spent one): a fresh offset, so tasks that wait for this reset do
            # not all leave at its instant (a sliding window frees one request at a time).
            spread = max(
                min(0.25, 0.1 * reset_in), self.SPREAD_RTTS * self._round_trip.worst * (self.sharers - 1)
            )
            self._resume_jitter = self._rng.uniform(0.0, spread)
        self._share.sample(now, info.remaining, reset_at, self._drew, self._advertised)
        self._reading = Reading(info.remaining, reset_at, now, sent_at)
        self._header_pace = self._budget_pace(self._reading, now)
        self._check_keeping_up(now)

    def _check_keeping_up(self, now: float) -> None:
        """Warn once when the task sends far less than the budget allows it, for long: something
        else is the bound (its concurrency over the latency, a slow input), not the server."""
        allowed = self.header_rate(now)
        if allowed is None or self._delivery.held_lately(now):
            self._lagging_since = None
            return
        delivered = self._delivered(now)
        if delivered >= allowed / 2:
            self._lagging_since = None
        elif self._lagging_since is None:
            self._lagging_since = now
        elif now - self._lagging_since >= self.LAGGING_S:
            self._notice(
                "lagging",
                f"the server's rate-limit headers allow this task about {allowed * 60:,.0f} requests/min "
                f"and it has sent {delivered * 60:,.0f}/min for {self.LAGGING_S:.0f} s: the bound is "
                f"elsewhere (about {self._round_trip.worst * 1000:.0f} ms a request: raise max_concurrency, or the "
                "input is slow to read).",
            )

    def on_held(self, start: float, until: float) -> None:
        """No request could leave from ``start`` to ``until`` (a ``Retry-After``)."""
        self._delivery.on_held(start, until)

    def _delivered(self, now: float) -> float:
        return self._delivery.rate(now, self._first_send)

    def on_sent(self, now: float) -> None:
        if self._first_send is None:
            self._first_send = now
        self._sends.append(now)
        while self._sends and self._sends[0] < now - self.HEADER_TTL_S:
            self._sends.popleft()  # an answer older than this is not trusted anyway

    def on_success(self, now: float, sent_at: float | None) -> None:
        """A request was answered: count it, and let the AIMD pace grow."""
        self._answered += 1
        self._drew += 1
        self._delivery.on_success(now)
        if sent_at is not None:
            self._round_trip.observe(now - sent_at)
        rate = max(self.aimd, self.floor)
        if self.starting:
            growth = rate * math.log(2) / self.START_DOUBLING_S
        else:
            quiet = now - self._last_decrease
            growth = self.GROWTH * self.top * 2.0 ** min(quiet / self.GROWTH_DOUBLING_S, 30.0)
        # `growth` is per second; successes arrive at about `rate` per second.
        self.aimd = min(self.top, rate + growth / rate)
        if self.aimd >= self.top:
            self.starting = False

    def on_rate_limited(self, now: float, sent_at: float | None) -> bool:
        """A 429 (not a spend cap). Returns whether it started a new episode (and slowed the pace)."""
        self._answered += 1
        if sent_at is not None and sent_at < self._last_decrease:
            return False  # sent before the last decrease: part of that episode
        if self._fresh(now) is not None:
            # Paced by the headers and still too fast: more tasks share the budget than estimated.
            self._share.on_429()
        self._decrease(now)
        return True

    def _decrease(self, now: float) -> None:
        pace = self.rate(now)
        # What the task delivered while free to send (a Retry-After hold is not crowding): tasks
        # that all started too fast drop to their share in one episode, not in many.
        # Nothing delivered yet (a 429 among the first answers) says nothing of the task's share:
        # then it starts again as 16 tasks starting together would. At the floor instead, it sent
        # one request every 12 s until an answer raised the pace (the benchmark's idle shards).
        delivered = self._delivered(now) if self._delivery else pace * self.START_FRACTION
        self.aimd = max(self.floor, self.DECREASE * min(pace, delivered))
        self.starting = False
        self._last_decrease = now
        self.decreases += 1
