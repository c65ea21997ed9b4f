"""How fast to send: the rate controllers behind :class:`~airflow_provider_pioneer.pacing.Pacer`.

Pure logic, no locks, no I/O: every method takes ``now`` (a monotonic time) so tests drive
them with a fake clock. The :class:`Pacer` holds the lock and does the waiting.

:class:`AdaptiveRate` (the default) needs no tuning. Pioneer counts ``/inference`` requests
per *account*, so every task on the account (mapped shards on other workers, other DAGs)
draws on one budget, and none of them knows how many others there are. Two signals let each
task find its share on its own:

* **the server's budget** (``X-RateLimit-Remaining`` / ``-Reset``, when the server sends
  them): spread what remains over the time until it is whole again, ``remaining / reset``.
  The counter is the account's, so when P tasks each follow it the budget left falls P times
  faster and every task slows down: together they spend the budget, none overdraws it.
  Never above ``limit / window`` (the advertised average rate) nor the user's ceiling.
* **429 feedback** (any server): start at the documented limit and adapt, AIMD-style. Every
  success adds a little (``GROWTH`` of the rate per second of successes, plus a small
  constant so that tasks converge to equal shares); a 429 *episode* multiplies the rate by
  ``DECREASE``. One episode is one decrease however many threads get a 429 for it: a 429 for
  a request sent before the last decrease is part of that episode. When the task delivered far
  less than its pace while it was free to send (a crowded account at start-up), the new rate
  drops to what it delivered instead of crawling down in many episodes, each of which costs
  429s and a ``Retry-After``. Time held by a ``Retry-After`` does not count: a task told to wait
  delivered nothing because it waited, not because the account was crowded.
  After a decrease the rate climbs back to what the task achieved (holds included), then probes
  above it; both go faster the longer no 429 comes (so the tasks left at the end of a job take
  over the budget the others freed within seconds, instead of finishing it alone at a crawl).

Both signals always apply: the pace is the lower of the two (and of the ceiling).

A task starts slowly (a sixteenth of the limit, doubling every quarter second of successes), or
at a quarter when the headers show the account's bucket full. Tasks that start together all
see it full; the first fall of its level is what tells them about each other, and each then
scales its pace by how fast the level falls, so together they come back under the refill rate
before the bucket is empty.

:class:`StaticRate` is the pacing of earlier releases (a fixed rate, 10% slower per 429),
kept for comparison in ``benchmarks/inference``.
"""

from __future__ import annotations

import math
import random
from collections import deque

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders

__all__ = ["DOCUMENTED_REQUESTS_PER_MINUTE", "AdaptiveRate", "StaticRate"]

#: Pioneer's documented ``POST /inference`` limit per account (CHANGES-2026-08: was 1,200).
DOCUMENTED_REQUESTS_PER_MINUTE = 5000.0
#: A limit header without a ``w=`` window is per minute, as all of Pioneer's limits are.
DEFAULT_WINDOW_SECONDS = 60.0


class StaticRate:
    """A fixed pace that slows by a tenth per 429 and creeps back (the earlier releases' pacing).

    :param requests_per_minute: the pace; ``None`` paces only by ``Retry-After``.
    """

    #: Lowest fraction of the configured rate that repeated 429s can push us to.
    MIN_RATE_FRACTION = 0.25

    def __init__(self, requests_per_minute: float | None) -> None:
        self.configured = None if requests_per_minute is None else requests_per_minute / 60.0
        self.current = self.configured

    def rate(self, now: float) -> float | None:
        return self.current

    def not_before(self, now: float) -> float:
        return now

    def reset_at(self, now: float) -> float | None:
        return None

    def gate_jitter(self, seconds: float) -> float:
        return 0.0

    def spacing(self, rate: float) -> float:
        return 1.0 / rate

    def on_headers(self, info: RateLimitHeaders, now: float, sent_at: float | None = None) -> None:
        pass

    def on_held(self, start: float, until: float) -> None:
        pass

    def on_success(self, now: float, sent_at: float | None) -> None:
        if self.current is not None and self.configured is not None and self.current < self.configured:
            self.current = min(self.configured, self.current + self.configured / 100.0)

    def on_rate_limited(self, now: float, sent_at: float | None) -> None:
        if self.current is not None and self.configured is not None:
            self.current = max(self.configured * self.MIN_RATE_FRACTION, self.current * 0.9)

    def describe(self, now: float) -> str:
        if self.current is None:
            return "pace: Retry-After only"
        return f"pace {self.current * 60:,.0f}/min"

    def source(self, now: float) -> str:
        return "fixed" if self.current is not None else "Retry-After only"


class AdaptiveRate:
    """The default pace: the server's budget when it tells it, congestion feedback always (module docstring).

    Rates are in requests per second.

    :param ceiling: never faster than this (the user's ``requests_per_minute`` / 60), or ``None``.
    :param documented: the documented account limit, where the pace starts without a ceiling.
    :param rng: random source for the jitter.
    """

    #: Multiplicative decrease per congestion episode.
    DECREASE = 0.85
    #: Never below this fraction of the top pace (one request every ~12 s at 5,000 rpm).
    FLOOR_FRACTION = 1 / 1000
    #: Slow start: the pace starts at this fraction of the top...
    SLOW_START_FRACTION = 1 / 16
    #: ...and grows by this relative amount per second of successes (doubles every quarter second).
    SLOW_START_GROWTH = math.log(2) / 0.25
    #: A full bucket holding this many seconds of the advertised rate lets a new task start at...
    FULL_START_BUDGET_S = 0.9
    #: ...this fraction of the top pace (slow start doubles it from there: full pace in half a
    #: second). Tasks that start together all take it: the fall-scaled exit brings them back.
    FULL_START_FRACTION = 0.25
    #: Relative growth per second of successes while probing above the last rate that worked.
    GROWTH = 0.005
    #: Constant growth per second, as a fraction of the top pace: what makes shares converge.
    ABS_GROWTH = 0.002
    #: Relative growth per second on the way back to the last rate that worked.
    RECOVERY = 0.05
    #: Probing doubles its speed for every this many seconds without congestion...
    PROBE_DOUBLING_S = 1.0
    #: ...up to this many times ``GROWTH`` (a task left alone takes over the freed budget in seconds).
    PROBE_MAX_SPEEDUP = 100.0
    #: Successes older than this are not counted in the delivered rate.
    DELIVERY_WINDOW_S = 2.0
    #: A task that delivered less than this share of its pace was crowded out: drop to what it delivered.
    CROWDED = 0.5
    #: Extra hold after a ``Retry-After``, at most this fraction of it (so tasks held together part).
    #: Small: their 429s already arrive spread over the moments the budget was empty, and for a
    #: task alone every extra moment held is budget lost (a quarter cost a simulated lone task on
    #: the legacy limit 2%).
    GATE_JITTER = 0.1
    #: Each pacing interval is drawn within this fraction of its mean (tasks do not lock in step).
    SPACING_JITTER = 0.2
    #: Requests of an announced window budget left unspent (the announcement is a round trip old).
    HEADER_MARGIN = 2.0
    #: A refilling budget (a token bucket) below this share of its size is congestion.
    LOW_WATER = 0.5
    #: A refilling budget above this share of its size has room to spare...
    HIGH_WATER = 0.9
    #: ...and the pace grows by this fraction of the top pace per second while it does (the
    #: same for every task, so shares even out)...
    AMPLE_GROWTH = 0.1
    #: ...plus this relative amount per second (it doubles in about a third of a second): when
    #: the other tasks finish, the last ones take over the freed budget at once instead of
    #: crawling up to it, which is what a job of several shards lost at its end.
    AMPLE_RELATIVE = 2.0
    #: A refilling budget still low this long after a decrease calls for another one.
    LOW_REPEAT_S = 1.0
    #: Resets this close are whole seconds rounded up: too coarse to spread a budget over.
    MIN_SPREAD_S = 2.0
    #: Leaving the slow start, the pace is scaled to draw this share of the refill rate.
    TARGET_DRAW = 0.95
    #: A fall seen over less than this is measured over this (responses arrive bunched).
    MIN_FALL_S = 0.05
    #: How far back the level's fall is measured.
    SLOPE_WINDOW_S = 0.5
    #: Header budgets older than this are not trusted any more.
    HEADER_TTL_S = 120.0

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
        #: Upper bound of the feedback pace: the ceiling, else the documented or advertised limit.
        self.top = ceiling if ceiling is not None else documented
        self.floor = self.top * self.FLOOR_FRACTION
        self.aimd = self.top * self.SLOW_START_FRACTION
        self.slow_start = True
        self._rng = rng or random.Random()
        self._last_decrease = -math.inf
        self._good: float | None = None  # the rate last known to work (achieved before congestion)
        self._above_since: float | None = None  # when the pace passed ``_good`` again
        self._deliveries: deque[float] = deque()
        self._holds: deque[tuple[float, float]] = deque()  # (start, until) of Retry-After holds
        self._first_send: float | None = None
        self.decreases = 0
        # Latest header budget: `_remaining` at `_seen_at`, whole again at `_reset`.
        self._remaining: float | None = None
        self._reset: float | None = None
        self._seen_at = -math.inf
        self._resume_jitter = 0.0
        self._advertised: float | None = None
        self._capacity = 0.0  # largest budget seen: the window's size, or the bucket's
        #: The budget refills as it goes (a token bucket), rather than all at once at the reset.
        self.refilling = False
        self._low_episode = False
        self._ample = False  # a refilling budget with room to spare
        self._refill_like = False
        self._levels: deque[tuple[float, float]] = deque()  # (time, remaining) of the last moments
        self._ample_seen: tuple[float, float] | None = None  # (time, remaining) when last ample

    # -- the pace -------------------------------------------------------------------------------

    def _window_budget(self, now: float) -> bool:
        """A fresh budget of a fixed window: spend it evenly until its reset."""
        return (
            not self.refilling
            and self._reset is not None
            and now - self._seen_at <= self.HEADER_TTL_S
            and now < self._reset
            and self._reset - self._seen_at > self.MIN_SPREAD_S
        )

    def header_rate(self, now: float) -> float | None:
        """``remaining / time to reset``, capped at the advertised average; ``None`` without a window budget."""
        if not self._window_budget(now) or self._remaining is None or self._reset is None:
            return None
        cap = self._advertised if self._advertised is not None else self.top
        if self._remaining < 1:
            return cap  # nothing left: `not_before` holds every send until the reset
        # Keep a couple of requests in hand: the budget read here is one round trip old, and
        # requests other tasks sent since then are already counted against it.
        spendable = max(self._remaining - self.HEADER_MARGIN, 0.5)
        return min(cap, spendable / max(self._reset - now, 1e-3))

    def rate(self, now: float) -> float:
        """Requests per second to pace at now."""
        pace = self.aimd
        by_headers = self.header_rate(now)
        if by_headers is not None:
            pace = min(pace, by_headers)
        if self.ceiling is not None:
            pace = min(pace, self.ceiling)
        return max(self.floor, pace)

    def not_before(self, now: float) -> float:
        """No send before this: the reset (plus jitter), while a window's budget is spent."""
        if self._window_budget(now) and self._remaining is not None and self._remaining < 1:
            assert self._reset is not None
            return self._reset + self._resume_jitter
        return now

    def reset_at(self, now: float) -> float | None:
        """When a window's budget is whole again: no pacing slot needs to wait past it."""
        return self._reset + self._resume_jitter if self._window_budget(now) and self._reset else None

    def gate_jitter(self, seconds: float) -> float:
        """Extra seconds to hold after a ``Retry-After`` of ``seconds``, so held tasks do not restart together."""
        return self._rng.uniform(0.0, self.GATE_JITTER * seconds)

    def spacing(self, rate: float) -> float:
        """Seconds to the next slot at ``rate``: jittered, so tasks pacing at one rate do not lock in step."""
        return self._rng.uniform(1.0 - self.SPACING_JITTER, 1.0 + self.SPACING_JITTER) / rate

    def source(self, now: float) -> str:
        """What decides the pace now."""
        aimd = self.aimd
        by_headers = self.header_rate(now)
        if self.ceiling is not None and self.ceiling <= min(aimd, by_headers or math.inf):
            return "ceiling"
        if by_headers is not None and by_headers <= aimd:
            return "server headers"
        if self.slow_start:
            return "starting"
        if self.decreases:
            return "server headers" if self.refilling else "429 feedback"
        return "advertised limit" if self._advertised is not None else "documented limit"

    def describe(self, now: float) -> str:
        """``pace 4,850/min``: short, for progress lines (:meth:`source` says what sets it)."""
        return f"pace {self.rate(now) * 60:,.0f}/min"

    # -- signals --------------------------------------------------------------------------------

    def on_headers(self, info: RateLimitHeaders, now: float, sent_at: float | None = None) -> None:
        """A response announced the account's budget."""
        if info.limit is not None:
            advertised = info.limit / (info.window or DEFAULT_WINDOW_SECONDS)
            self._advertised = advertised
            if self.ceiling is None and advertised != self.top:
                # The server knows this account's limit better than the docs do.
                self.aimd = min(self.aimd * advertised / self.top, advertised)
                self.top = advertised
                self.floor = self.top * self.FLOOR_FRACTION
        reset = now + info.reset_in
        previous, previous_reset = self._remaining, self._reset
        if (
            previous is not None
            and previous_reset is not None
            and info.remaining >= previous + 2
            and now < previous_reset - 0.5
        ):
            # More budget than a moment ago, long before the announced reset: it refills as it goes.
            self.refilling = True
        self._capacity = max(self._capacity, info.remaining)
        if previous_reset is None or abs(reset - previous_reset) > 0.5 or info.remaining < 1:
            # A new window (or a spent one): a fresh offset, so tasks that all wait for this
            # reset do not leave together. Small: at the reset the whole budget is back.
            self._resume_jitter = self._rng.uniform(0.0, min(0.25, 0.1 * info.reset_in))
        self._remaining = info.remaining
        self._reset = reset
        self._seen_at = now
        self._levels.append((now, info.remaining))
        while self._levels and self._levels[0][0] < now - self.SLOPE_WINDOW_S:
            self._levels.popleft()
        self._refill_like = self.refilling or info.reset_in <= self.MIN_SPREAD_S
        low = info.remaining < max(1.0, self.LOW_WATER * self._capacity)
        self._ample = self._refill_like and info.remaining >= self.HIGH_WATER * self._capacity
        if self._ample:
            self._ample_seen = (now, info.remaining)
        if self._refill_like and not self._ample:
            if self.slow_start:
                # The shared budget started to drain while we were still climbing: others draw on
                # it too (or we passed its refill rate). Every task that sees the fall scales by
                # how fast it falls, so together they come back under the refill rate at once
                # instead of waiting for it to run low.
                self.slow_start = False
                # A full bucket hides how much is drawn (it cannot rise); the fall from the last
                # ample reading shows the whole of it.
                drawn = self._drawn_since(self._ample_seen, now, info.remaining)
                if drawn is not None and drawn > 1.0:
                    self.aimd = max(self.floor, self.aimd * self.TARGET_DRAW / drawn)
        elif (
            self.slow_start
            and self._ample
            and self._advertised is not None
            and info.remaining >= self.FULL_START_BUDGET_S * self._advertised
        ):
            # The account's bucket is full: nobody else is drawing on it now, so skip most of the
            # slow start (a bucket this size absorbs the overshoot if others start at once).
            self.aimd = max(self.aimd, self.FULL_START_FRACTION * self.top)
        if not self._refill_like:
            if self.slow_start:  # a window's budget: `header_rate` spreads it, no need to feel the way
                self.slow_start = False
                self.aimd = self.top
            return
        if not low:
            self._low_episode = False
        elif (not self._low_episode or now - self._last_decrease > self.LOW_REPEAT_S) and self._congestion(
            now, sent_at, self._overdraw()
        ):
            # A token bucket running low: slow down now rather than wait for the 429. Once per
            # dip (the level lags the pace), unless it stays low for a while.
            self._low_episode = True

    def on_held(self, start: float, until: float) -> None:
        """No request could leave from ``start`` to ``until`` (a ``Retry-After``)."""
        if self._holds and start <= self._holds[-1][1]:
            start = min(start, self._holds[-1][0])
            until = max(until, self._holds.pop()[1])
        while self._holds and self._holds[0][1] < start - self.DELIVERY_WINDOW_S:
            self._holds.popleft()  # bounded without a 429 to trim them (a long warm-up's holds)
        self._holds.append((start, until))

    def _delivered(self, now: float, *, free_only: bool = True) -> float:
        """Successes per second over the last ``DELIVERY_WINDOW_S``: per second the task was free
        to send (``free_only``), or per second of the whole window (what it achieved, holds included)."""
        while self._deliveries and self._deliveries[0] < now - self.DELIVERY_WINDOW_S:
            self._deliveries.popleft()
        start = max(now - self.DELIVERY_WINDOW_S, self._first_send if self._first_send is not None else now)
        while self._holds and self._holds[0][1] < start:
            self._holds.popleft()
        held = (
            sum(max(0.0, min(until, now) - max(begin, start)) for begin, until in self._holds)
            if free_only
            else 0.0
        )
        # The first successes of a run come in a burst: measure over at least a quarter second.
        return len(self._deliveries) / max(now - start - held, 0.25)

    def _speedup(self, quiet_s: float) -> float:
        """How many times faster to grow after ``quiet_s`` seconds without congestion."""
        return min(self.PROBE_MAX_SPEEDUP, 2.0 ** (quiet_s / self.PROBE_DOUBLING_S))

    def on_sent(self, now: float) -> None:
        if self._first_send is None:
            self._first_send = now

    def on_success(self, now: float, sent_at: float | None) -> None:
        """A request was answered: count it, and let the pace grow (additive increase)."""
        self._deliveries.append(now)
        if self.aimd >= self.top:
            self.slow_start = False
            return
        rate = max(self.aimd, self.floor)
        good = self._good
        if self.slow_start:
            growth = self.SLOW_START_GROWTH * rate
        elif self._ample:
            # The server says the shared budget has room: take it quickly, every task by the
            # same amount (so shares even out); its headers warn before it runs dry.
            growth = self.AMPLE_GROWTH * self.top + self.AMPLE_RELATIVE * rate
        elif good is not None and rate < good:
            growth = self.RECOVERY * rate
            if now - self._seen_at > self.HEADER_TTL_S:
                # Without headers, back to what worked quickly once no 429 has come for a while:
                # at the end of a job the budget of the tasks that finished is free, and only this
                # growth takes it (with headers, an ample bucket says so and is taken at once).
                quiet = self._speedup(now - self._last_decrease)
                growth = max(growth, (self.GROWTH * rate + self.ABS_GROWTH * self.top) * quiet)
            self._above_since = None
        else:
            if self._above_since is None:
                self._above_since = now
            speedup = self._speedup(now - self._above_since)
            growth = self.GROWTH * speedup * rate + self.ABS_GROWTH * self.top
        # `growth` is per second; successes arrive at about `rate` per second.
        new = rate + growth / rate
        if not self.slow_start and not self._ample and good is not None and rate < good:
            new = min(new, good)
        self.aimd = min(self.top, new)

    def on_rate_limited(self, now: float, sent_at: float | None) -> bool:
        """A 429 (not a spend cap). Returns whether it started a new episode (and slowed the pace)."""
        return self._congestion(now, sent_at)

    def _drawn_since(self, since: tuple[float, float] | None, now: float, remaining: float) -> float | None:
        """How many times its refill rate the account draws, from the level's fall since ``since``
        (a ``(time, remaining)`` reading); ``None`` without one or without an advertised limit."""
        if since is None or self._advertised is None:
            return None
        seen_at, level = since
        fall_per_s = (level - remaining) / max(now - seen_at, self.MIN_FALL_S)
        return 1.0 + fall_per_s / self._advertised

    def _overdraw(self) -> float | None:
        """How many times its refill rate the account draws now, from how fast the level falls."""
        if len(self._levels) < 2:
            return None
        (t0, _), (t1, r1) = self._levels[0], self._levels[-1]
        if t1 - t0 < 0.1:
            return None
        return self._drawn_since(self._levels[0], t1, r1)

    def _congestion(self, now: float, sent_at: float | None, overdraw: float | None = None) -> bool:
        if sent_at is not None and sent_at < self._last_decrease:
            return False  # sent before the last decrease: part of that episode
        pace = self.rate(now)
        delivered = self._delivered(now)  # while free to send: a Retry-After hold is not crowding
        if overdraw is not None and overdraw > 1.0 / self.DECREASE:
            # Every task on the account sees the same fall and scales by the same factor:
            # together they come back to the refill rate at once.
            new = pace * max(1 - self.DECREASE, 0.95 / overdraw)
        elif delivered < self.CROWDED * pace:
            new = max(delivered, pace * (1 - self.DECREASE))
        else:
            new = pace * self.DECREASE
        # What worked is what the task achieved, holds included: climbing back to the pace it had
        # between holds would only bring the next 429 (and the next hold) sooner.
        self._good = max(new, min(pace, self._delivered(now, free_only=False)))
        self.aimd = max(self.floor, new)
        self.slow_start = False
        self._above_since = None
        self._last_decrease = now
        self.decreases += 1
        return True
