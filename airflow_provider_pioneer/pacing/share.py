"""How many tasks draw on one account's budget, seen from one of them (no I/O, fake-clock friendly).

Pioneer's ``X-RateLimit-*`` headers say what is left, not who is spending it. One task learns
its share from two things it sees: how fast the account draws on the budget (the fall of
``Remaining`` between its answers, plus what the server freed meanwhile) and how many of
those requests were its own. ``sharers`` is the first over the second, from decaying sums.
:class:`~airflow_provider_pioneer.pacing.rate.AdaptiveRate` divides the budget by it.
"""

from __future__ import annotations

import math

__all__ = ["AccountShare"]


class AccountShare:
    """This task's estimate of how many tasks share the account (``sharers``, at least 1).

    :param advertised: a callable giving the server's advertised rate (``Limit`` over its
        window, requests per second), or ``None`` while none is believable.
    """

    #: The account's draw and this task's answers are summed over about this many seconds.
    MEMORY_S = 3.0
    #: Every task's measured share is raised by this before it paces: what a task draws is
    #: what it measures, so the measurement alone would keep any split of the budget; the same
    #: small addition for every task evens the shares out (P tasks then ask for 1 + P times
    #: this more than the budget, which the budget itself corrects by falling), as additive
    #: increase does in AIMD (``test_shards_started_apart_on_a_small_bucket_share_it_fairly...``).
    BONUS = 0.02
    #: The first estimate waits for this many answers of the task's own (fewer are noise).
    FIRST_ANSWERS = 3
    #: A 429 while paced by headers multiplies the estimate by this (the measurement brings it
    #: back down if it was a stray): a wrong estimate costs a few 429s, not many.
    ON_429 = 1.5

    def __init__(self) -> None:
        self.sharers = 1.0
        #: The server frees budget as it goes (a bucket, a sliding window), not only at a window's end.
        self.frees = True
        #: The largest budget seen: a bucket's size, a window's limit.
        self.capacity = 0.0
        self._last: tuple[float, float, int, float] | None = None  # time, remaining, drew, reset_at
        self._anchor: tuple[float, float] | None = None  # (seen_at, reset_at) of a reset that stays put
        self._drawn = 0.0  # the account's draw and this task's answers, decaying sums
        self._own = 0.0

    def sample(
        self, now: float, remaining: float, reset_at: float, drew: int, advertised: float | None
    ) -> None:
        """A new reading of the budget, after ``drew`` requests of this task that drew on it (not its 429s).

        Both sums are over the last ``MEMORY_S`` or so (a ratio of sums: one task is answered a
        handful of times a second, and a ratio of handfuls is noise).
        """
        self.capacity = max(self.capacity, remaining)
        self._estimate(now, remaining, reset_at, drew, advertised)
        self._see_freeing(now, reset_at, remaining)

    def _estimate(
        self, now: float, remaining: float, reset_at: float, drew: int, advertised: float | None
    ) -> None:
        last = self._last
        self._last = (now, remaining, drew, reset_at)
        if last is None:
            return
        then, level, drew_then, last_reset = last
        own = drew - drew_then
        span = now - then
        if (
            span <= 0
            or (now > last_reset and last_reset - then > 0.5)
            or (remaining > level and not self.frees)
        ):
            # A window reset in between: the rise is not the others' doing. A fixed window's budget
            # rises only then; its end is known to a second, and a pair across it read as the
            # others giving budget back: tasks at P = 8 took themselves for 2-4 (5.6% 429s).
            return
        # What the server freed meanwhile is about the advertised rate (all tasks count it alike).
        # A reset that stayed put (a window counting down, a sliding log's first window) while the
        # budget fell freed nothing: counted, a task alone there took itself for one of 3-4.
        counting_down = abs(reset_at - last_reset) < 1.0 and remaining <= level and reset_at - now >= 1.0
        refill = (advertised or 0.0) * span if self.frees and not counting_down else 0.0
        drawn = level - remaining + refill  # answers overtake each other: sums telescope, pairs do not
        if remaining >= self.capacity - 1:
            # A full budget says nothing of the others' draw (what the server freed was lost, not
            # drawn): counted as drawn, a task alone on a full bucket took itself for one of ten
            # and crawled (the benchmark's tail). Only this task's own answers are known drawn.
            drawn = own
        keep = math.exp(-span / self.MEMORY_S)
        self._drawn = self._drawn * keep + drawn
        self._own = self._own * keep + own
        if drew >= self.FIRST_ANSWERS and self._drawn > 0:
            share = min(self._own / self._drawn, 1.0) + self.BONUS
            self.sharers = min(max(1.0 / share, 1.0), 1000.0)

    @property
    def measured(self) -> float:
        """The share as measured, without ``BONUS`` (at least half the share paced by): where the
        budget is about empty it cannot fall to correct what the bonus asks for too much."""
        share = 1.0 / self.sharers
        return max(share - self.BONUS, share / 2)

    def on_429(self) -> None:
        """A 429 while paced by the budget: more tasks share it than estimated."""
        self.sharers *= self.ON_429
        self._drawn *= self.ON_429

    def _see_freeing(self, now: float, reset_at: float, remaining: float) -> None:
        """A fixed window frees budget only at its end: its announced reset stays put while time
        passes, where a bucket's or a sliding window's moves on with it. A sliding window's first
        window looks fixed (its oldest request stays put), so the latest evidence wins: a reset
        that moves while the budget stays low (not a new window's) is a server that frees."""
        anchor = self._anchor
        if anchor is None or abs(reset_at - anchor[1]) > 1.5:  # whole seconds: a second of play
            if anchor is not None and remaining < self.capacity / 2:
                self.frees = True
            self._anchor = (now, reset_at)
        elif now - anchor[0] >= 2.0 and reset_at - now >= 1.0:
            self.frees = False
