"""What of a server's ``X-RateLimit-*`` headers to believe (no I/O, fake-clock friendly).

Headers can lie: a proxy's ``Limit`` below what ``Remaining`` says is left, a ``Reset`` that
jumps to a day (a clock gone wrong, a daily quota), a per-second ``Limit`` sent without
``w=``. :class:`HeaderBelief` turns each answer's headers into the reset and the advertised
rate that :class:`~airflow_provider_pioneer.pacing.rate.AdaptiveRate` paces by, and says (once)
what it did not believe.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders

__all__ = ["DEFAULT_WINDOW_SECONDS", "HeaderBelief", "Reading", "WindowEnd"]

#: A limit header without a ``w=`` window is per minute, as all of Pioneer's limits are.
DEFAULT_WINDOW_SECONDS = 60.0


class Reading(NamedTuple):
    """A believed budget: ``remaining`` at ``seen_at`` (answering a request sent at ``sent_at``),
    whole again at ``reset_at`` (monotonic seconds)."""

    remaining: float
    reset_at: float
    seen_at: float
    sent_at: float | None = None


class HeaderBelief:
    """The believable part of each answer's rate-limit headers.

    :param notice: called with ``(kind, text)`` for a warning (the caller logs each kind once).
    """

    #: No ``Reset`` is believed beyond this many times the longest of the last ``TRUST_S``
    #: (at least 1 s): a lying one can slow the pace, or hold it, at most that much, with a
    #: warning (``test_a_reset_far_beyond_the_recent_ones_slows_at_most_tenfold_with_a_warning``).
    LIE_FACTOR = 10.0
    #: The resets of about this many seconds of answers are what "recent" means above.
    TRUST_S = 10.0

    def __init__(self, notice: Callable[[str, str], None]) -> None:
        self._notice = notice
        #: ``Limit`` over its window, requests per second, while believable; else ``None``.
        self.advertised: float | None = None
        self._trusted: deque[tuple[float, float]] = deque()  # (seen_at, reset_in) of recent answers
        self._longest_reset = 0.0  # the longest Reset seen, seconds
        self._contradicted = False  # a Limit below Remaining was seen: never trusted again

    def reset_in(self, info: RateLimitHeaders, now: float) -> float:
        """Seconds to the reset to pace by: whole seconds made half a second sooner, a jump far
        beyond the recent resets capped at ``LIE_FACTOR`` times them (with a warning)."""
        reset_in = info.reset_in
        if reset_in >= 1 and reset_in == int(reset_in):
            # Whole seconds, rounded up (every server seen): half a second sooner on average.
            reset_in -= 0.5
        while self._trusted and self._trusted[0][0] < now - self.TRUST_S:
            self._trusted.popleft()
        longest = self.LIE_FACTOR * max([1.0, *(horizon for _, horizon in self._trusted)])
        if self._trusted and reset_in > longest:
            # A reset far beyond every recent one would slow the pace, or hold it, by as much.
            self._notice(
                "reset",
                f"the server's X-RateLimit-Reset jumped to {info.reset_in:.0f} s (the answers "
                f"before said at most {longest / self.LIE_FACTOR:.0f} s); pacing and waiting as "
                f"if it said {longest:.0f} s, in case it is wrong.",
            )
            return longest
        self._trusted.append((now, reset_in))
        return reset_in

    def read_limit(self, info: RateLimitHeaders, capacity: float) -> float | None:
        """The advertised rate after this answer (``capacity``: the largest budget seen)."""
        if info.limit is None:
            return self.advertised
        if info.limit < info.remaining:
            # A limit below what is left cannot be the limit (a proxy's header, a per-key limit
            # beside the account's budget): the budget itself paces, the limit is ignored.
            self.advertised = None
            self._contradicted = True
            self._notice(
                "limit",
                f"the server's X-RateLimit-Limit ({info.limit:.0f}) is below X-RateLimit-Remaining "
                f"({info.remaining:.0f}); ignoring the limit, pacing by what remains.",
            )
            return None
        if not self._contradicted:
            self._longest_reset = max(self._longest_reset, info.reset_in)
            self.advertised = info.limit / self._window(info, capacity)
        return self.advertised

    def _window(self, info: RateLimitHeaders, capacity: float) -> float:
        """The window the ``Limit`` counts over: ``w=`` when sent, else the longest reset seen
        when the budget comes near the limit (a window's count: slowapi sends "80" for 80 per
        2 s, and a fresh window announces its whole length), else a minute (a bucket's limit
        per minute above a bucket a second deep, as Pioneer's own)."""
        if info.window:
            return info.window
        assert info.limit is not None
        if capacity >= info.limit / 2 and 0 < self._longest_reset < DEFAULT_WINDOW_SECONDS:
            return max(1.0, math.ceil(self._longest_reset))
        return DEFAULT_WINDOW_SECONDS


class WindowEnd:
    """A fixed window's end, sharper than one answer's whole-second ``Reset`` says.

    ``Reset: n`` (whole seconds, rounded up) puts the end between ``n - 1`` and ``n`` seconds
    after the server counted the request, which was between its sending and its answer; the
    answers of one window narrow that down to about a round trip. From one answer alone
    (``n - 0.5``), the last second of every window was paced as if half a second remained: a
    task alone left 5-10 of each 100-request window unspent (``test_a_task_alone_spends_a_short_
    fixed_window_to_its_end``). Only a fixed window's reset is one end that stays put.
    """

    def __init__(self) -> None:
        #: A spent budget came back whole at once at its reset: a fixed window. A sliding window's
        #: first window also keeps its reset put, but at its end it frees a little at a time.
        self.fixed = False
        self._bounds: tuple[float, float] | None = None  # the end lies between, monotonic seconds

    def see(
        self, before: float, reset_before: float, after: float, reset_after: float, capacity: float
    ) -> None:
        """Two answers in turn: ``before`` left until ``reset_before``, then ``after`` until ``reset_after``."""
        # Under half the largest budget, then all of it but one (this request) again, with a reset
        # more than a second (whole-second rounding) later: a new window, whole at once.
        if before < capacity / 2 <= after - 1 and reset_after > reset_before + 1.0:
            self.fixed = True

    def reset_at(
        self, info: RateLimitHeaders, reset_in: float, now: float, sent_at: float | None, *, frees: bool
    ) -> float:
        """When the budget is whole again; ``reset_in``: what :class:`HeaderBelief` believes of it.

        :param frees: the server was seen to free budget as it goes (its reset moves every answer).
        """
        whole = info.reset_in >= 1 and info.reset_in == int(info.reset_in)
        if frees or not self.fixed or not whole or reset_in != info.reset_in - 0.5:
            self._bounds = None  # not a fixed window's end in whole seconds (or not believed)
            return now + reset_in
        low = (now if sent_at is None else sent_at) + info.reset_in - 1.0
        high = now + info.reset_in
        if self._bounds is not None and low < self._bounds[1] and self._bounds[0] < high:
            low, high = max(low, self._bounds[0]), min(high, self._bounds[1])  # the same end: narrower
        self._bounds = (low, high)
        return (low + high) / 2.0
