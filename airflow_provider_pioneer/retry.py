"""The retry policy: the one place that decides whether a failed call is sent again, and when.

Pure logic, no HTTP library: a transport runs the loop (as openai-python's ``_base_client`` and
botocore's retry handler do) and asks :meth:`RetryPolicy.next_wait` after each failed attempt::

    call = policy.start(what, deadline)
    while True:
        try:
            return attempt()
        except PioneerError as error:        # or a transport failure, as a Failure
            wait = policy.next_wait(call, error)
            if wait is None:
                raise
            sleep(wait)

The verdicts:

* an HTTP error carries its own (:attr:`PioneerError.retryable`: 5xx but 501/505, a proxy's 408,
  429 unless it is about money, 425); a failure without an answer is a :class:`Failure`: a
  connection failure is retried, a read timeout too (but only once on a route that may already
  have billed the work, ``read_timeout_once``), a passed deadline or a protocol error never;
* a warming model (425) is waited out within the client's warm-up budget (``warmup_timeout``, one
  clock for every call of the client, reset by any success) and spends no ``max_retries``; every
  other retry spends one;
* waits: full-jitter exponential backoff, uniform in ``[0, min(cap, base * 2**(n-1))]`` before
  retry ``n`` (AWS architecture blog), and uniform in ``[0, 1]`` after a 425, to spread the threads
  the gate releases together;
* no retry starts when its wait would reach the call's deadline;
* what the server asked for (``Retry-After``, seconds or an HTTP date, capped at
  ``max_retry_after``) is not a backoff but a gate every thread of the client waits at:
  :meth:`RetryPolicy.hold_gate` closes the pacer's (a 429 slows the pace too; a money error
  waits for nothing; a 425 that names no wait holds :data:`DEFAULT_WARMUP_WAIT`).
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_pioneer.exceptions import (
    PioneerBillingError,
    PioneerError,
    PioneerModelWarmingError,
    PioneerRateLimitError,
)

if TYPE_CHECKING:
    from airflow_provider_pioneer.pacing import Pacer

__all__ = ["DEFAULT_WARMUP_WAIT", "CallRecord", "Failure", "Outcome", "RetryPolicy"]

#: Seconds every thread waits after a 425 that names no ``Retry-After``.
DEFAULT_WARMUP_WAIT = 5.0


class Failure(enum.Enum):
    """An attempt that ended without an HTTP answer, as the policy judges it (each transport maps
    its library's exceptions to one)."""

    #: Refused, reset, a name that does not resolve, a connect timeout, an answer that broke off.
    CONNECT = "connect"
    #: No answer within the timeout: the server may have done (and billed) the work.
    READ_TIMEOUT = "read timeout"
    #: The call's deadline passed: nothing may start after it.
    DEADLINE = "deadline"
    #: Anything else the transport raised (a malformed answer...): not worth sending again.
    OTHER = "other"


#: What one failed attempt ended with: the typed error of an HTTP answer, or a :class:`Failure`.
Outcome = PioneerError | Failure


@dataclass
class CallRecord:
    """One call's attempts, the only state the loop carries (one per call, never shared).

    :param what: the call, e.g. ``"POST /inference"``, for messages.
    :param deadline: monotonic time after which no attempt starts.
    :param max_retries: retries this call may spend.
    :param read_timeout_once: a read timeout is retried at most once (the work may be billed).
    """

    what: str
    deadline: float
    max_retries: int
    read_timeout_once: bool = False
    #: Attempts made so far.
    attempts: int = 1
    #: Retries spent from ``max_retries`` (a warming model's waits are not).
    retries: int = 0
    read_timeouts: int = 0
    #: The one key re-read after a 401 is spent.
    key_refreshed: bool = False

    def tries(self) -> str:
        """`` (3 attempts)`` for a message, or nothing after a single attempt."""
        return f" ({self.attempts} attempts)" if self.attempts > 1 else ""


class RetryPolicy:
    """Whether, and after how long, a failed call is sent again (see the module's docstring).

    One per client: its warm-up clock is the client's.

    :param max_retries: retries after the first attempt, for retryable failures.
    :param backoff_base: first backoff ceiling, seconds.
    :param backoff_cap: largest backoff ceiling, seconds.
    :param max_retry_after: longest ``Retry-After`` obeyed, seconds.
    :param warmup_timeout: seconds, in all, the client waits for warming models (425) to come up.
    :param rng: random source for the jitter (seed it in tests).
    :param clock: monotonic clock, seconds.
    """

    def __init__(
        self,
        *,
        max_retries: int = 5,
        backoff_base: float = 1.0,
        backoff_cap: float = 20.0,
        max_retry_after: float = 120.0,
        warmup_timeout: float = 600.0,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_retries = int(max_retries)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self.warmup_timeout = float(warmup_timeout)
        self._rng = rng or random.Random()
        self._clock = clock
        # When this client first met a warming model since its last success (None: not warming).
        self._warming_since: float | None = None

    def start(
        self, what: str, deadline: float, max_retries: int | None = None, *, read_timeout_once: bool = False
    ) -> CallRecord:
        """The record of a new call (``max_retries``: this call's budget, default the policy's)."""
        budget = self.max_retries if max_retries is None else max_retries
        return CallRecord(what, deadline, budget, read_timeout_once)

    # -- the decisions -------------------------------------------------------------------------------

    def backoff_ceiling(self, retry: int) -> float:
        """Largest backoff before retry number ``retry`` (1-based): base * 2**(retry-1), capped."""
        return float(min(self.backoff_cap, self.backoff_base * 2 ** (retry - 1)))

    def should_retry(self, call: CallRecord, outcome: Outcome) -> bool:
        """Whether ``outcome`` is worth another attempt of ``call``, as far as its budgets go
        (the deadline is :meth:`next_wait`'s). Reads, never changes, the state."""
        if isinstance(outcome, PioneerError):
            if not outcome.retryable:
                return False
            if isinstance(outcome, PioneerModelWarmingError):
                return self.warmup_spent() < self.warmup_timeout
        elif outcome is Failure.READ_TIMEOUT:
            if call.read_timeout_once and call.read_timeouts > 1:
                return False
        elif outcome is not Failure.CONNECT:
            return False
        return call.retries < call.max_retries

    def delay(self, call: CallRecord, outcome: Outcome) -> float:
        """Seconds to wait before the next attempt of ``call`` (a random draw: full jitter)."""
        if isinstance(outcome, PioneerModelWarmingError):
            return self._rng.uniform(0.0, 1.0)  # the gate holds them; this spreads their release
        return self._rng.uniform(0.0, self.backoff_ceiling(call.retries + 1))

    def next_wait(self, call: CallRecord, outcome: Outcome) -> float | None:
        """After a failed attempt: seconds to wait before the next one, or ``None``: give up.

        The one place the state changes: ``call`` counts its read timeouts, attempts and spent
        retries; a 425 starts the client's warm-up clock.
        """
        if outcome is Failure.READ_TIMEOUT:
            call.read_timeouts += 1
        warming = isinstance(outcome, PioneerModelWarmingError)
        if warming and self._warming_since is None:
            self._warming_since = self._clock()
        if not self.should_retry(call, outcome):
            return None
        wait = self.delay(call, outcome)
        if self._clock() + wait >= call.deadline:
            return None
        call.attempts += 1
        if not warming:
            call.retries += 1
        return wait

    # -- the client's shared state -------------------------------------------------------------------

    def warmup_spent(self) -> float:
        """Seconds of the warm-up budget spent (0 while no model is warming)."""
        since = self._warming_since
        return 0.0 if since is None else self._clock() - since

    def on_success(self) -> None:
        """A call succeeded: whatever was warming is up; the next 425 starts a new budget."""
        self._warming_since = None

    def server_wait(self, error: PioneerError) -> float | None:
        """The ``Retry-After`` of ``error``, capped at ``max_retry_after`` (``None``: none given)."""
        return None if error.retry_after is None else min(error.retry_after, self.max_retry_after)

    def hold_gate(self, error: PioneerError, pacer: Pacer) -> None:
        """Make every thread of the client wait what the server asked for, on ``pacer``'s gate."""
        wait = self.server_wait(error)
        if isinstance(error, PioneerBillingError):
            return  # waiting does not help; the caller fails fast
        if isinstance(error, PioneerRateLimitError):
            pacer.on_rate_limited(wait)
        elif isinstance(error, PioneerModelWarmingError):
            # Every thread would meet the same cold model: hold them all until it should be up.
            pacer.hold(DEFAULT_WARMUP_WAIT if wait is None else wait)
        elif wait is not None:
            pacer.hold(wait)
