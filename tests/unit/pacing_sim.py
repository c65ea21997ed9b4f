"""A deterministic simulation of P tasks sharing one account's rate limit (no threads, no sleeps).

Each task is an :class:`AdaptiveRate` (or :class:`StaticRate`) driven the way :class:`Pacer`
drives it: it sends at its pace, waits out ``Retry-After`` (plus its jitter) and spent budgets,
and hears back after ``latency``. The server is a per-account counter: a fixed window or a
token bucket, with or without ``X-RateLimit-*`` headers. Simulated time only: the results
are the same on any machine, so tests may assert on them.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from dataclasses import dataclass, field

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders
from airflow_provider_pioneer.pacing.pacer import Pacer, slot_time
from airflow_provider_pioneer.pacing.rate import AdaptiveRate, StaticRate

RECHECK_S = Pacer.RECHECK_S


def _whole(seconds: float) -> float:
    """Seconds as servers send them: whole, rounded up (``Reset: 0`` only when it is now)."""
    return float(max(0, math.ceil(seconds - 1e-9)))


def _retry_after(seconds: float) -> float:
    return float(max(1, math.ceil(seconds - 1e-9)))


class TokenBucketServer:
    """``per_minute`` refill, ``burst`` capacity; Remaining = whole tokens.

    :param reset: ``"full"``: Reset = seconds until the bucket is full (the emulator's);
        ``"next"``: seconds until the next token (0 while one is there: a gateway's).
    """

    def __init__(self, per_minute: float, burst: float | None = None, *, reset: str = "full") -> None:
        self.rate = per_minute / 60.0
        self.limit = per_minute
        self.capacity = burst if burst is not None else max(1.0, self.rate)
        self.tokens = self.capacity
        self.stamp = 0.0
        self.reset = reset

    def take(self, now: float) -> tuple[bool, float, RateLimitHeaders]:
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        ok = self.tokens >= 1.0
        if ok:
            self.tokens -= 1.0
        retry_after = 0.0 if ok else _retry_after((1.0 - self.tokens) / self.rate)
        if self.reset == "full":
            reset_in = _whole((self.capacity - self.tokens) / self.rate)
        else:
            reset_in = 0.0 if self.tokens >= 1 else _whole((1.0 - self.tokens) / self.rate)
        info = RateLimitHeaders(limit=self.limit, remaining=math.floor(self.tokens), reset_in=reset_in)
        return ok, retry_after, info


class FixedWindowServer:
    """``limit`` requests per ``window`` seconds (``limits``' fixed window): the window starts at
    its first request, every request counts (refused ones too); Reset = seconds until it ends."""

    def __init__(self, per_minute: float, window: float = 60.0) -> None:
        self.limit = per_minute * window / 60.0
        self.window = window
        self.start: float | None = None
        self.used = 0

    def take(self, now: float) -> tuple[bool, float, RateLimitHeaders]:
        if self.start is None or now >= self.start + self.window:
            self.start = now
            self.used = 0
        self.used += 1
        ok = self.used <= self.limit
        reset_in = self.start + self.window - now
        remaining = max(0.0, self.limit - self.used)
        info = RateLimitHeaders(limit=self.limit, remaining=remaining, reset_in=_whole(reset_in))
        return ok, (0.0 if ok else _retry_after(reset_in)), info


class MovingWindowServer:
    """A sliding log (``limits``' moving window): at most ``limit`` requests in any ``window`` seconds.

    Reset = seconds until the oldest request in the window leaves it (the next free slot).
    """

    def __init__(self, per_minute: float, window: float = 60.0) -> None:
        self.limit = per_minute * window / 60.0
        self.window = window
        self.log: deque[float] = deque()

    def take(self, now: float) -> tuple[bool, float, RateLimitHeaders]:
        while self.log and self.log[0] <= now - self.window:
            self.log.popleft()
        ok = len(self.log) < self.limit
        if ok:
            self.log.append(now)
        reset_in = self.log[0] + self.window - now if self.log else self.window
        info = RateLimitHeaders(
            limit=self.limit, remaining=self.limit - len(self.log), reset_in=_whole(reset_in)
        )
        return ok, (0.0 if ok else _retry_after(reset_in)), info


class SlidingCounterServer:
    """``limits``' sliding-window counter: the previous window's count, weighted by how much of it
    still overlaps the last ``window`` seconds, plus the current one's.

    Reset = seconds until the weighted count drops by one, or the window ends (``limits``' stats).
    """

    def __init__(self, per_minute: float, window: float = 60.0) -> None:
        self.limit = per_minute * window / 60.0
        self.window = window
        self.index = 0
        self.previous = 0
        self.current = 0

    def _roll(self, now: float) -> float:
        index = int(now // self.window)
        if index != self.index:
            self.previous = self.current if index == self.index + 1 else 0
            self.current = 0
            self.index = index
        return self.window - (now - index * self.window)  # the previous window's weight, in seconds

    def _weighted(self, previous_ttl: float) -> float:
        return self.previous * previous_ttl / self.window + self.current

    def take(self, now: float) -> tuple[bool, float, RateLimitHeaders]:
        previous_ttl = self._roll(now)
        ok = math.floor(self._weighted(previous_ttl)) + 1 <= self.limit  # as limits compares
        if ok:
            self.current += 1
        weighted = self._weighted(previous_ttl)
        candidates = [previous_ttl]  # the current window ends
        if self.previous:
            candidates.append(previous_ttl % (self.window / self.previous))
        reset_in = min(candidates)
        remaining = max(0, self.limit - math.floor(weighted))
        if ok:
            retry_after = 0.0
        elif self.previous:
            # Until enough of the previous window has slid out for one more request.
            excess = weighted + 1 - self.limit
            retry_after = _retry_after(min(excess * self.window / self.previous, previous_ttl))
        else:
            retry_after = _retry_after(previous_ttl)
        return (
            ok,
            retry_after,
            RateLimitHeaders(limit=self.limit, remaining=remaining, reset_in=_whole(reset_in)),
        )


Server = TokenBucketServer | FixedWindowServer | MovingWindowServer | SlidingCounterServer

#: The four limiter models, by the names the emulator uses.
SERVERS = {
    "token_bucket": TokenBucketServer,
    "fixed_window": FixedWindowServer,
    "moving_window": MovingWindowServer,
    "sliding_window": SlidingCounterServer,
}


@dataclass
class SimResult:
    requests: int = 0
    succeeded: int = 0
    rate_limited: int = 0
    per_task: list[int] = field(default_factory=list)
    #: When each task had its quota answered (``quota`` runs only).
    finished_at: list[float] = field(default_factory=list)

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0


def simulate(
    controllers: list[AdaptiveRate | StaticRate],
    server: Server,
    *,
    seconds: float,
    headers: bool = True,
    latency: float = 0.05,
    concurrency: int = 8,
    seed: int = 0,
    quota: int | None = None,
    starts: list[float] | None = None,
    latency_jitter: float = 0.0,
) -> SimResult:
    """Run the tasks for ``seconds`` of simulated time; each sends as its controller allows.

    :param quota: each task stops after this many successes (a shard of a job).
    :param starts: when each task starts (processes on busy workers start seconds apart).
    :param latency_jitter: mean of an exponential delay added to each reply (busy cores, queues).
    """
    rng = random.Random(seed)
    result = SimResult(per_task=[0] * len(controllers), finished_at=[math.inf] * len(controllers))
    gate = [0.0] * len(controllers)
    next_slot = [(starts[i] if starts else 0.0) + rng.uniform(0.0, 0.05) for i in range(len(controllers))]
    in_flight = [0] * len(controllers)
    booked = [(-math.inf, 0.0)] * len(controllers)
    pulled_to: list[float | None] = [None] * len(controllers)
    # Events: (time, order, kind, task, payload)
    events: list[tuple[float, int, str, int, tuple[bool, float, RateLimitHeaders | None, float]]] = []
    order = 0
    for i in range(len(controllers)):
        heapq.heappush(events, (next_slot[i], order, "send", i, (True, 0.0, None, 0.0)))
        order += 1
    while events:
        now, _, kind, i, payload = heapq.heappop(events)
        if now > seconds:
            break
        ctl = controllers[i]
        if kind == "reply":
            ok, retry_after, info, sent_at = payload
            in_flight[i] -= 1
            if headers and info is not None:
                ctl.on_headers(info, now, sent_at)
            if ok:
                ctl.on_success(now, sent_at)
                if quota is not None and result.per_task[i] >= quota and result.finished_at[i] == math.inf:
                    result.finished_at[i] = now
            else:
                ctl.on_rate_limited(now, sent_at)
                jitter = ctl.gate_jitter(retry_after)
                gate[i] = max(gate[i], now + retry_after + jitter)
                ctl.on_held(now, gate[i])
            if in_flight[i] == concurrency - 1:  # a worker was free again: let it send
                heapq.heappush(events, (max(now, next_slot[i]), order, "send", i, payload))
                order += 1
            continue
        # "send": like Pacer.acquire
        if in_flight[i] >= concurrency or (quota is not None and result.per_task[i] >= quota):
            continue
        blocked = max(gate[i], ctl.not_before(now))
        if blocked > now:
            heapq.heappush(events, (blocked, order, "send", i, payload))
            order += 1
            continue
        rate = ctl.rate(now)
        if rate is not None:
            # At the pace of now, as Pacer.acquire: a slot booked at a slower pace is pulled in,
            # and a task waiting for its slot looks again every RECHECK_S.
            tat, pulled = slot_time(next_slot[i], booked[i], rate, now, ctl.reset_at(now), pulled_to[i])
            if tat > now + 1e-9:
                heapq.heappush(events, (min(tat, now + RECHECK_S), order, "send", i, payload))
                order += 1
                continue
            booked[i] = (tat, rate)
            next_slot[i] = tat + ctl.spacing(rate)
            pulled_to[i] = pulled
        ctl.on_sent(now)
        ok, retry_after, info = server.take(now)
        result.requests += 1
        if ok:
            result.succeeded += 1
            result.per_task[i] += 1
        else:
            result.rate_limited += 1
        in_flight[i] += 1
        heapq.heappush(
            events,
            (
                now + latency + (rng.expovariate(1 / latency_jitter) if latency_jitter else 0.0),
                order,
                "reply",
                i,
                (ok, retry_after, info, now),
            ),
        )
        order += 1
        if in_flight[i] < concurrency:
            heapq.heappush(events, (max(now, next_slot[i]), order, "send", i, payload))
            order += 1
    return result


def adaptive_tasks(
    p: int, *, ceiling_rpm: float | None = None, seed: int = 0
) -> list[AdaptiveRate | StaticRate]:
    return [
        AdaptiveRate(None if ceiling_rpm is None else ceiling_rpm / 60.0, rng=random.Random(seed + i))
        for i in range(p)
    ]
