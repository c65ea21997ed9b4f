"""How fast to send: the rate controller behind :class:`~airflow_provider_pioneer.pacing.Pacer`.

Pure logic, no locks, no I/O: every method takes ``now`` (a monotonic time) so tests drive
it with a fake clock. The :class:`Pacer` holds the lock and does the waiting.

Pioneer counts ``/inference`` requests per *account*: every task on it (mapped shards on
other workers, other DAGs) draws on one budget, and none knows how many others there are.
:class:`AdaptiveRate` needs no tuning and follows one of two rules, whichever applies:

* **The server says what is left** (``X-RateLimit-Remaining`` and ``-Reset``): spend it
  evenly until the reset, shared with the other tasks::

      pace = (remaining - margin) / (time to reset * sharers)

  ``sharers`` is how many tasks draw on the account, estimated from how fast ``Remaining``
  falls against what this task itself sent. ``Reset`` means "the window ends" on a fixed
  window and "the next request fits" on a token bucket or a sliding window: a reset sooner
  than two round trips is spread over two round trips (what was left an answer ago is all
  this task can know). The rule holds on every limiter model: on a window it spends the
  window's budget by its end; on a token bucket and a sliding window it settles where the
  account draws what the server frees.
* **Otherwise (no headers)**: additive increase, multiplicative decrease on 429. A 429
  *episode* (every 429 of requests sent before the last decrease) decreases the pace once,
  to ``DECREASE`` of what the task delivered; between episodes the pace grows by the same
  small amount for every task (so tasks converge to equal shares), and that amount doubles
  for every few seconds without a 429 (so a task left alone at the end of a job takes over
  the budget the others freed in seconds, not minutes).

A user's ``requests_per_minute`` is a ceiling and where the pace starts: the pace goes lower
only when the server says so (a 429, or headers). Without one, the pace starts low (a
sixteenth of the documented limit) until the first answer, then follows the headers or
doubles until the first 429.

:class:`StaticRate` (``pacing/fixed.py``) is the pacing of earlier releases, kept for
``Pacer(adaptive=False)`` and the comparisons in ``benchmarks/inference``.
"""

from __future__ import annotations

import math
import random
from collections import deque

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders

__all__ = ["DOCUMENTED_REQUESTS_PER_MINUTE", "AdaptiveRate", "StaticRate"]

from airflow_provider_pioneer.pacing.fixed import StaticRate

#: Pioneer's documented ``POST /inference`` limit per account (CHANGES-2026-08: was 1,200).
DOCUMENTED_REQUESTS_PER_MINUTE = 5000.0
#: A limit header without a ``w=`` window is per minute, as all of Pioneer's limits are.
DEFAULT_WINDOW_SECONDS = 60.0


class _Reading:
    """The latest ``X-RateLimit-*`` budget: ``remaining`` at ``seen_at``, whole again at ``reset_at``."""

    __slots__ = ("remaining", "reset_at", "seen_at")

    def __init__(self, remaining: float, reset_at: float, seen_at: float) -> None:
        self.remaining = remaining
        self.reset_at = reset_at
        self.seen_at = seen_at


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
    #: How many tasks share the account is measured over about this many seconds: the account's
    #: draw (the fall of the budget plus what the server freed) over this task's answers.
    SHARE_MEMORY_S = 3.0
    #: Every task's measured share is raised by this before it paces (see ``_sample_sharers``):
    #: P tasks then draw about 1 + P times this of the budget rate, which the budget itself
    #: corrects (it falls), and unequal shares even out within tens of seconds (P = 16, apart).
    SHARE_BONUS = 0.02
    #: The first estimate waits for this many answers of the task's own (fewer are noise).
    SHARE_FIRST_ANSWERS = 3
    #: A 429 while paced by headers multiplies the estimate of the sharers by this (the
    #: measurement brings it back down if it was a stray): a wrong estimate costs a few 429s.
    SHARE_ON_429 = 1.5
    #: No ``Reset`` is believed beyond this many times the longest of the last ``HEADER_TTL_S``
    #: (at least 1 s): a lying one can slow the pace, or hold it, at most that much, with a warning.
    LIE_FACTOR = 10.0
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
        self._deliveries: deque[float] = deque()
        self._holds: deque[tuple[float, float]] = deque()
        self._first_send: float | None = None
        self._srtt = 0.05  # seconds, smoothed; a loopback-to-cloud guess until the first answer
        self._rttvar = 0.0  # its mean deviation (as TCP keeps them, RFC 6298)
        self._answered = 0  # answers of this task, for the share estimate
        self._reading: _Reading | None = None
        self._header_pace: float | None = None  # what the latest reading allowed
        self._trusted: deque[tuple[float, float]] = deque()  # (seen_at, reset_in) of recent answers
        self._advertised: float | None = None  # Limit / window, when it is believable
        self.sharers = 1.0
        self._last_level: tuple[float, float, int, float] | None = (
            None  # (time, remaining, answered, reset_at)
        )
        self._frees = True  # the server frees budget before the reset (not a fixed window)
        self._reset_anchor: tuple[float, float] | None = None  # (seen_at, reset_at) of a reset that stays put
        self._drawn = 0.0  # the account's draw and this task's answers, decaying sums
        self._own = 0.0
        self._capacity = 0.0  # the largest budget seen: a bucket's size, a window's limit
        self._longest_reset = 0.0  # the longest Reset seen, seconds
        self._resume_jitter = 0.0
        self._warned: set[str] = set()
        self._lagging_since: float | None = None

    # -- the pace -------------------------------------------------------------------------------

    def _fresh(self, now: float) -> _Reading | None:
        reading = self._reading
        if reading is None or now > max(reading.seen_at + self.HEADER_TTL_S, reading.reset_at):
            return None
        return reading

    def _margin(self) -> float:
        # What the account sends while an answer travels: this task's share of it times the sharers.
        pace = self._header_pace if self._header_pace is not None else self.aimd
        return self.MARGIN + pace * self.sharers * self._rtt

    def _budget_pace(self, reading: _Reading, now: float) -> float:
        """``(remaining - margin) / (time to reset * sharers)``, with the floors of the docstring."""
        reset_in = reading.reset_at - now
        horizon = max(reset_in, self.SPREAD_RTTS * self._rtt)
        spare = reading.remaining - self._margin()
        if self._frees and self._advertised is not None and horizon > reset_in:
            # Spread over round trips longer than the reset, a budget that frees as it goes (a
            # bucket a second deep) frees that much more meanwhile: not counted, a task alone on
            # a busy machine (slow answers) paced at 70% of a 1,200/min bucket.
            spare += self._advertised * (horizon - max(reset_in, 0.0))
        if spare <= 0:
            # At or below the margin the budget says only "about empty" (a sliding window at
            # its limit always is): the AIMD pace paces, the empty budget its congestion signal,
            # and never more than one request per round trip among the sharers: enough to hear
            # when budget frees, never a burst into an empty budget.
            per_task = 1.0 / self._rtt
            if self._frees and self._advertised is not None:
                # What frees, shared: the same law as above for every task (a pace per round trip
                # gave the tasks that saw an empty budget more than those that saw a low one).
                per_task = self._advertised
            return min(self.aimd, per_task / self.sharers)
        return spare / (horizon * self.sharers)

    def header_rate(self, now: float) -> float | None:
        """What the server's budget allows this task now; ``None`` without a fresh budget."""
        reading = self._fresh(now)
        if reading is None:
            return None
        pace = self._budget_pace(reading, now)
        if (
            self.ceiling is None
            and self._answered < self.SHARE_FIRST_ANSWERS
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
        if reading is not None and reading.remaining < 1:
            return reading.reset_at + self._resume_jitter
        return now

    def reset_at(self, now: float) -> float | None:
        """When a fixed window's budget is whole again: no pacing slot needs to wait past it.

        ``None`` when the server frees its budget as it goes (a bucket, a sliding window): its
        reset is only the next free request, and threads released together there would 429.
        """
        reading = self._fresh(now)
        return None if reading is None or self._frees else reading.reset_at + self._resume_jitter

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
            self._observe_rtt(now - sent_at)
        self._capacity = max(self._capacity, info.remaining)
        self._read_limit(info)
        reset_in = info.reset_in
        if reset_in >= 1 and reset_in == int(reset_in):
            # Whole seconds, rounded up (every server seen): half a second sooner on average.
            reset_in -= 0.5
        self._forget_trusted(now)
        longest = self.LIE_FACTOR * max([1.0, *(horizon for _, horizon in self._trusted)])
        if self._trusted and reset_in > longest:
            # A reset far beyond every recent one (a clock gone wrong, a day's quota) would slow
            # the pace, or hold it, by as much: believe at most ten times the recent resets.
            self._notice(
                "reset",
                f"the server's X-RateLimit-Reset jumped to {info.reset_in:.0f} s (the answers "
                f"before said at most {longest / self.LIE_FACTOR:.0f} s); pacing and waiting as "
                f"if it said {longest:.0f} s, in case it is wrong.",
            )
            reset_in = longest
        else:
            self._trusted.append((now, reset_in))
        reset_at = now + reset_in
        previous = self._fresh(now)
        if previous is None or abs(reset_at - previous.reset_at) > 0.5 or info.remaining < 1:
            # A new window (or a spent one): a fresh offset, so tasks that wait for this reset do
            # not all leave at its instant (a sliding window frees one request at a time).
            spread = max(min(0.25, 0.1 * reset_in), self.SPREAD_RTTS * self._rtt * (self.sharers - 1))
            self._resume_jitter = self._rng.uniform(0.0, spread)
        self._sample_sharers(now, info.remaining, reset_at)
        self._see_freeing(now, reset_at)
        self._reading = _Reading(info.remaining, reset_at, now)
        self._header_pace = self._budget_pace(self._reading, now)
        self._check_keeping_up(now)

    def _check_keeping_up(self, now: float) -> None:
        """Warn once when the task sends far less than the budget allows it, for long: something
        else is the bound (its concurrency over the latency, a slow input), not the server."""
        allowed = self.header_rate(now)
        if allowed is None or (self._holds and self._holds[-1][1] > now - self.DELIVERY_WINDOW_S):
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
                f"elsewhere (about {self._rtt * 1000:.0f} ms a request: raise max_concurrency, or the "
                "input is slow to read).",
            )

    def _forget_trusted(self, now: float) -> None:
        while self._trusted and self._trusted[0][0] < now - self.HEADER_TTL_S:
            self._trusted.popleft()

    def _read_limit(self, info: RateLimitHeaders) -> None:
        if info.limit is None:
            return
        if info.limit < info.remaining:
            # A limit below what is left cannot be the limit (a proxy's header, a per-key limit
            # beside the account's budget): the budget itself paces, the limit is ignored.
            self._advertised = None
            self._notice(
                "limit",
                f"the server's X-RateLimit-Limit ({info.limit:.0f}) is below X-RateLimit-Remaining "
                f"({info.remaining:.0f}); ignoring the limit, pacing by what remains.",
            )
            return
        if "limit" in self._warned:
            return  # once contradicted, never trusted again in this run
        self._longest_reset = max(self._longest_reset, info.reset_in)
        self._advertised = info.limit / self._window(info)
        if self.ceiling is None and self._advertised > self.top:
            # The server knows this account's limit better than the docs do.
            self.top = self._advertised
            self.floor = self.top * self.FLOOR_FRACTION

    def _window(self, info: RateLimitHeaders) -> float:
        """The window the ``Limit`` counts over: ``w=`` when sent, else the longest reset seen
        when the budget comes near the limit (a window's count: slowapi sends "80" for 80 per
        2 s, and a fresh window announces its whole length), else a minute (a bucket's limit
        per minute above a bucket a second deep, as Pioneer's own)."""
        if info.window:
            return info.window
        assert info.limit is not None
        if self._capacity >= info.limit / 2 and 0 < self._longest_reset < DEFAULT_WINDOW_SECONDS:
            return max(1.0, math.ceil(self._longest_reset))
        return DEFAULT_WINDOW_SECONDS

    def _sample_sharers(self, now: float, remaining: float, reset_at: float) -> None:
        """Re-estimate how many tasks draw on the account: the account's draw over this task's.

        Both are sums over the last ``SHARE_MEMORY_S`` or so (a ratio of sums: one task answered
        a handful of times a second, and a ratio of handfuls is noise).
        """
        self._capacity = max(self._capacity, remaining)
        last = self._last_level
        self._last_level = (now, remaining, self._answered, reset_at)
        if last is None:
            return
        then, level, answered, last_reset = last
        own = self._answered - answered
        span = now - then
        if span <= 0 or (now > last_reset and last_reset - then > 0.5):
            return  # a window reset in between: the rise is not the others' doing
        # What the server freed meanwhile is about the advertised rate (all tasks count it the
        # same way, so their shares compare: a full bucket's unused refill counts too, and the
        # budget rule spends a full bucket whatever the estimate).
        refill = (self._advertised or 0.0) * span if self._frees else 0.0
        drawn = level - remaining + refill  # answers overtake each other: sums telescope, pairs do not
        if remaining >= self._capacity - 1:
            # A full budget says nothing of the others' draw (what the server freed was lost, not
            # drawn): counted as drawn, a task alone on a full bucket took itself for one of ten
            # and crawled (the benchmark's tail). Only this task's own answers are known drawn.
            drawn = own
        keep = math.exp(-span / self.SHARE_MEMORY_S)
        self._drawn = self._drawn * keep + drawn
        self._own = self._own * keep + own
        if self._answered >= self.SHARE_FIRST_ANSWERS and self._drawn > 0:
            # The share it measured, plus the same small share for every task: what a task
            # draws is what it measures, so the measurement alone would keep any split of the
            # budget (a task that joined late keeps what it grabbed); the common addition is
            # what evens the shares out, as additive increase does in AIMD.
            share = min(self._own / self._drawn, 1.0) + self.SHARE_BONUS
            self.sharers = min(max(1.0 / share, 1.0), 1000.0)

    def _see_freeing(self, now: float, reset_at: float) -> None:
        """Whether the server frees budget as it goes (a bucket, a sliding window: the default),
        or only at a window's end (a fixed window): then the announced reset stays put while
        time passes, where a bucket's or a sliding window's moves on with it."""
        anchor = self._reset_anchor
        if anchor is None or abs(reset_at - anchor[1]) > 1.5:  # whole seconds: a second of play
            self._reset_anchor = (now, reset_at)
        elif now - anchor[0] >= 2.0 and reset_at - now >= 1.0:
            self._frees = False

    def _observe_rtt(self, rtt: float) -> None:
        if rtt >= 0:
            error = min(rtt, 5.0) - self._srtt
            self._srtt += 0.125 * error
            self._rttvar += 0.25 * (abs(error) - self._rttvar)

    @property
    def _rtt(self) -> float:
        """How old an answer may be: the smoothed round trip plus four deviations (TCP's RTO): a
        busy machine's slow answers, not only its typical ones, are what the margin must cover."""
        return self._srtt + 4.0 * self._rttvar

    def on_held(self, start: float, until: float) -> None:
        """No request could leave from ``start`` to ``until`` (a ``Retry-After``)."""
        if self._holds and start <= self._holds[-1][1]:
            start = min(start, self._holds[-1][0])
            until = max(until, self._holds.pop()[1])
        while self._holds and self._holds[0][1] < start - self.DELIVERY_WINDOW_S:
            self._holds.popleft()
        self._holds.append((start, until))

    def _delivered(self, now: float) -> float:
        """Successes per second the task was free to send, over the last ``DELIVERY_WINDOW_S``."""
        while self._deliveries and self._deliveries[0] < now - self.DELIVERY_WINDOW_S:
            self._deliveries.popleft()
        start = max(now - self.DELIVERY_WINDOW_S, self._first_send if self._first_send is not None else now)
        while self._holds and self._holds[0][1] < start:
            self._holds.popleft()
        held = sum(max(0.0, min(until, now) - max(begin, start)) for begin, until in self._holds)
        # The first successes of a run come in a burst: measure over at least a quarter second.
        return len(self._deliveries) / max(now - start - held, 0.25)

    def on_sent(self, now: float) -> None:
        if self._first_send is None:
            self._first_send = now

    def on_success(self, now: float, sent_at: float | None) -> None:
        """A request was answered: count it, and let the AIMD pace grow."""
        self._answered += 1
        self._deliveries.append(now)
        if sent_at is not None:
            self._observe_rtt(now - sent_at)
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
            self.sharers *= self.SHARE_ON_429
            self._drawn *= self.SHARE_ON_429
        self._decrease(now)
        return True

    def _decrease(self, now: float) -> None:
        pace = self.rate(now)
        # What the task delivered while free to send (a Retry-After hold is not crowding): tasks
        # that all started too fast drop to their share in one episode, not in many.
        # Nothing delivered yet (a 429 among the first answers) says nothing of the task's share:
        # then it starts again as 16 tasks starting together would. At the floor instead, it sent
        # one request every 12 s until an answer raised the pace (the benchmark's idle shards).
        delivered = self._delivered(now) if self._deliveries else pace * self.START_FRACTION
        self.aimd = max(self.floor, self.DECREASE * min(pace, delivered))
        self.starting = False
        self._last_decrease = now
        self.decreases += 1
