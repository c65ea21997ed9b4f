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

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders

__all__ = ["DEFAULT_WINDOW_SECONDS", "HeaderBelief"]

#: A limit header without a ``w=`` window is per minute, as all of Pioneer's limits are.
DEFAULT_WINDOW_SECONDS = 60.0


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
