"""The ``/inference`` rate-limiter models of the emulator, usable alone on a simulated clock.

Pioneer does not document its limiter, and servers of each kind behave differently near the limit,
so the emulator can run any of four models (:data:`MODELS`):

- ``token_bucket``: a bucket refilled at the per-minute rate, one second's worth deep by default
  (gateways); :class:`~airflow_provider_pioneer.testing.limits.TokenBucket`, since the ``limits``
  library has no token bucket.
- ``fixed_window``: at most N requests per window, the window starting at its first request
  (``limits.FixedWindowRateLimiter``, slowapi's default).
- ``moving_window``: at most N requests in any window ending now, a log of every request
  (``limits.MovingWindowRateLimiter``).
- ``sliding_window``: the sliding-window counter: this window's count plus the previous window's,
  weighted by how much of it still overlaps (``limits.SlidingWindowCounterRateLimiter``).

The window models count with the ``limits`` library's own in-memory storage and strategies; only
their clock is ours: :func:`make_limiter` takes any ``clock``, so a simulator can drive them in
simulated time (see :class:`_ClockedStorage` for how).
"""

from __future__ import annotations

import contextvars
import importlib.util
import math
import time as _time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_pioneer.testing._deps import INSTALL_HINT
from airflow_provider_pioneer.testing.limits import TokenBucket, reset_seconds

if TYPE_CHECKING:
    from limits import RateLimitItem
    from limits.storage import MemoryStorage
    from limits.strategies import RateLimiter

__all__ = ["MODELS", "Limiter", "LimiterPool", "check_model", "check_settings", "make_limiter"]

#: The limiter models, the default first.
MODELS: tuple[str, ...] = ("token_bucket", "fixed_window", "moving_window", "sliding_window")
#: A refused request's wait is stretched by this much, so that a request sent exactly after the
#: wait is let through (the library compares strictly, and sums of floats round).
_EPSILON_S = 1e-6
_KEY = "inference"


class Limiter(Protocol):
    """One rate limit (one account's, or one key's)."""

    model: str

    def hit(self) -> float:
        """Count one request: 0.0 when it is allowed, else the seconds until one would be.

        A request sent exactly that much later is allowed. A refused request is not counted,
        except by ``fixed_window``, whose counter (as in ``limits``) counts every hit of a window.
        """
        ...

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-Limit/-Remaining/-Reset`` as a server of this kind sends them right now."""
        ...


def check_model(model: str) -> str:
    """``model`` if it is one of :data:`MODELS`.

    :raises ValueError: naming the valid models.
    """
    if model not in MODELS:
        raise ValueError(f"unknown rate-limit model {model!r}: use one of {', '.join(MODELS)}")
    return model


def make_limiter(
    model: str,
    per_minute: float,
    *,
    window_s: float = 60.0,
    burst: float | None = None,
    clock: Callable[[], float] = _time.monotonic,
    window_in_limit: bool = False,
) -> Limiter:
    """A limiter of ``model`` allowing ``per_minute`` requests a minute, on ``clock``.

    :param model: one of :data:`MODELS`.
    :param per_minute: the rate; a window model allows ``floor(per_minute * window_s / 60)``
        requests (at least 1) per window of ``window_s``.
    :param window_s: window length of the window models, whole seconds (the token bucket's
        ``Limit`` is always per minute).
    :param burst: token bucket only: its capacity (None: one second's worth, at least 1).
    :param clock: seconds, any origin (``time.monotonic``, or a simulator's clock).
    :param window_in_limit: send ``X-RateLimit-Limit: 100;w=60`` (the IETF draft's quota policy, as
        some gateways send it) rather than a bare ``100``.
    :raises ValueError: an unknown model, a rate or window that is not positive, a window that is
        not whole seconds, or a burst for a window model.
    """
    check_settings(model, per_minute, window_s=window_s, burst=burst)
    if model == "token_bucket":
        return TokenBucket(per_minute, burst, clock=clock, window_in_limit=window_in_limit)
    return WindowLimiter(model, per_minute, int(window_s), clock=clock, window_in_limit=window_in_limit)


def check_settings(
    model: str, per_minute: float | None, *, window_s: float = 60.0, burst: float | None = None
) -> None:
    """Refuse settings :func:`make_limiter` cannot honour (``per_minute`` None: no limit, fine).

    :raises ValueError: saying which setting is wrong and what to use instead.
    :raises ModuleNotFoundError: a window model without the ``limits`` library installed.
    """
    check_model(model)
    if per_minute is not None and not per_minute > 0:
        raise ValueError(f"per_minute must be above 0 (None: no limit), not {per_minute!r}")
    if model == "token_bucket":
        return
    if burst is not None:
        raise ValueError(f"burst applies to the token_bucket model only, not to {model}: leave it None")
    if not (window_s >= 1 and float(window_s).is_integer()):
        raise ValueError(
            f"window_s must be whole seconds, at least 1 (limits' granularity), not {window_s!r}"
        )
    if importlib.util.find_spec("limits") is None:
        raise ModuleNotFoundError(
            f"The {model} model needs the limits library: {INSTALL_HINT}", name="limits"
        )


class LimiterPool:
    """One rate limit per scope (an API key or an account), all of the same settings.

    What the emulator's ``/inference`` route counts against; not thread-safe (the emulator's state
    calls it under its lock). Arguments as :func:`make_limiter`'s; ``per_minute`` None: no limit.
    """

    def __init__(
        self,
        per_minute: float | None,
        *,
        model: str = "token_bucket",
        burst: float | None = None,
        window_s: float = 60.0,
        window_in_limit: bool = False,
        clock: Callable[[], float] = _time.monotonic,
    ) -> None:
        self._clock = clock
        self._limiters: dict[str, Limiter] = {}
        self.configure(
            per_minute, model=model, burst=burst, window_s=window_s, window_in_limit=window_in_limit
        )

    def configure(
        self,
        per_minute: float | None,
        *,
        model: str,
        burst: float | None = None,
        window_s: float = 60.0,
        window_in_limit: bool = False,
    ) -> None:
        """New settings; every scope starts afresh (a full bucket, empty windows).

        :raises ValueError: as :func:`check_settings`; the settings in force are kept then.
        """
        check_settings(model, per_minute, window_s=window_s, burst=burst)
        self.per_minute, self.model, self.burst = per_minute, model, burst
        self.window_s, self.window_in_limit = window_s, window_in_limit
        self._limiters.clear()

    def hit(self, scope: str) -> float:
        """Count one request of ``scope``: 0.0 when allowed, else the seconds until one would be."""
        if self.per_minute is None:
            return 0.0
        limiter = self._limiters.get(scope)
        if limiter is None:
            limiter = self._limiters[scope] = make_limiter(
                self.model, self.per_minute, window_s=self.window_s, burst=self.burst,
                clock=self._clock, window_in_limit=self.window_in_limit,
            )  # fmt: skip
        return limiter.hit()

    def headers(self, scope: str) -> dict[str, str]:
        """``X-RateLimit-*`` of ``scope`` now ({} when unlimited or never counted)."""
        limiter = self._limiters.get(scope) if self.per_minute is not None else None
        return limiter.headers() if limiter is not None else {}

    def drop(self, scope: str) -> None:
        """Forget ``scope`` (a revoked key)."""
        self._limiters.pop(scope, None)


# -- the limits library on our clock ------------------------------------------------------------------
# limits' in-memory storage and strategies read ``time.time()`` through their modules' ``time``
# global. We swap that global, once, for a stand-in that answers with the clock of the limiter
# being called (a context variable, so concurrent threads with different clocks never mix) and
# with the real ``time.time()`` for everyone else: other users of limits in the process see no change.
_CLOCK: contextvars.ContextVar[float | None] = contextvars.ContextVar("pioneer_limiter_now", default=None)


class _TimeShim:
    """Stands in for the ``time`` module inside ``limits.storage.memory`` and ``limits.strategies``."""

    def time(self) -> float:
        now = _CLOCK.get()
        return _time.time() if now is None else now

    def __getattr__(self, name: str) -> Any:
        return getattr(_time, name)


_SHIM = _TimeShim()


def _install_shim() -> None:
    import limits.storage.memory
    import limits.strategies

    for module in (limits.storage.memory, limits.strategies):
        module.__dict__["time"] = _SHIM


def _storage() -> MemoryStorage:
    """limits' ``MemoryStorage`` without its expiry thread.

    That thread (``threading.Timer``, restarted on every hit) drops expired entries by the real
    ``time.time()``: under a simulated clock it would drop live ones. It is stopped at once, never
    restarted, and :meth:`WindowLimiter.hit` expires entries itself, on the limiter's clock.
    """
    from limits.storage import MemoryStorage

    if not hasattr(MemoryStorage, "_MemoryStorage__schedule_expiry"):  # pragma: no cover
        raise RuntimeError("this limits release changed its MemoryStorage: pin limits>=5,<6")

    class _ClockedStorage(MemoryStorage):
        def __init__(self) -> None:
            super().__init__()
            self.timer.cancel()
            self.timer.join()  # if it fired already, it has finished (on empty storage)

        def _MemoryStorage__schedule_expiry(self) -> None:  # the library's hook: no thread
            pass

    return _ClockedStorage()


def _expire(storage: MemoryStorage) -> None:
    """Drop the expired entries, as the thread would have (on the clock of :data:`_CLOCK`)."""
    storage._MemoryStorage__expire_events()  # type: ignore[attr-defined]


class WindowLimiter:
    """A window model of :data:`MODELS` on the ``limits`` library (see :func:`make_limiter`).

    :param model: ``fixed_window``, ``moving_window`` or ``sliding_window``.
    :param per_minute: the rate.
    :param window_s: window length, whole seconds.
    :param clock: seconds, any origin.
    :param window_in_limit: send ``Limit: N;w=<window_s>``.
    """

    def __init__(
        self,
        model: str,
        per_minute: float,
        window_s: int,
        *,
        clock: Callable[[], float] = _time.monotonic,
        window_in_limit: bool = False,
    ) -> None:
        from limits import RateLimitItemPerSecond
        from limits.strategies import (
            FixedWindowRateLimiter,
            MovingWindowRateLimiter,
            SlidingWindowCounterRateLimiter,
        )

        _install_shim()
        strategies: dict[str, type[RateLimiter]] = {
            "fixed_window": FixedWindowRateLimiter,
            "moving_window": MovingWindowRateLimiter,
            "sliding_window": SlidingWindowCounterRateLimiter,
        }
        self.model = model
        self.per_minute = per_minute
        self.window_s = window_s
        #: requests allowed per window (1e-9: 1200 * 5 / 60 must give 100, not 99)
        self.amount = max(1, math.floor(per_minute * window_s / 60 + 1e-9))
        self.window_in_limit = window_in_limit
        self._clock = clock
        # limits keys its sliding windows by int(now / window), which is wrong for now < window
        # (int() rounds -0.5 up to 0: the previous window's key is the current one's); a clock
        # shifted by a whole number of windows stays positive and keeps the windows where they were.
        self._offset = float(window_s * 10**6)
        self._item: RateLimitItem = RateLimitItemPerSecond(self.amount, window_s)
        self._storage = _storage()
        self._next_expiry = 0.0  # when to drop expired entries next (they take memory, nothing else)
        self._strategy = strategies[model](self._storage)

    def _now(self) -> float:
        return self._clock() + self._offset

    def hit(self) -> float:
        now = self._now()
        token = _CLOCK.set(now)  # one reading for the whole call, as if it took no time
        try:
            if now >= self._next_expiry:  # housekeeping only: every check compares timestamps
                _expire(self._storage)
                self._next_expiry = now + self.window_s
            if self._strategy.hit(self._item, _KEY):
                return 0.0
            return max(self._wait(now), 0.0) + _EPSILON_S
        finally:
            _CLOCK.reset(token)

    def _wait(self, now: float) -> float:
        """Seconds from ``now`` until the library would let one more request through."""
        key = self._item.key_for(_KEY)
        window = float(self.window_s)
        if self.model == "fixed_window":
            return self._storage.get_expiry(key) - now  # the window's end
        if self.model == "moving_window":
            # Full: the oldest request in the window leaves it at its start + window.
            start, _count = self._storage.get_moving_window(key, self.amount, self.window_s)
            return start + window - now
        # Sliding-window counter: allowed while prev * overlap / window + cur < amount, the overlap
        # (the previous window's weight) shrinking to 0 at the current window's end.
        prev, _prev_ttl, cur, cur_ttl = self._storage.get_sliding_window(key, self.window_s)
        to_end = cur_ttl - window
        if cur < self.amount:
            return to_end - (self.amount - cur) * window / prev if prev else 0.0
        # This window alone is full: it becomes the previous one, whose weight must fall below
        # amount / cur.
        return to_end + window * (1 - self.amount / cur)

    def headers(self) -> dict[str, str]:
        now = self._now()
        token = _CLOCK.set(now)
        try:
            stats = self._strategy.get_window_stats(self._item, _KEY)
        finally:
            _CLOCK.reset(token)
        limit = f"{self.amount};w={self.window_s}" if self.window_in_limit else str(self.amount)
        return {
            "X-RateLimit-Limit": limit,
            "X-RateLimit-Remaining": str(stats.remaining),
            "X-RateLimit-Reset": str(reset_seconds(stats.reset_time - now)),
        }

    def __repr__(self) -> str:
        return f"WindowLimiter({self.model!r}, {self.amount} per {self.window_s} s)"
