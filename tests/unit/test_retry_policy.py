"""RetryPolicy: the verdicts, the waits and the budgets, on a simulated clock (pure logic)."""

from __future__ import annotations

import random
from typing import Any

import pytest

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.retry import DEFAULT_WARMUP_WAIT, CallRecord, Failure, RetryPolicy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Draws(random.Random):
    """Records each uniform(a, b) asked for and answers ``b * fraction``."""

    def __init__(self, fraction: float = 1.0) -> None:
        super().__init__(0)
        self.fraction = fraction
        self.asked: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.asked.append((a, b))
        return b * self.fraction


class Pacer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def on_rate_limited(self, seconds: float | None) -> None:
        self.calls.append(("on_rate_limited", seconds))

    def hold(self, seconds: float) -> None:
        self.calls.append(("hold", seconds))


def policy(clock: Clock | None = None, rng: random.Random | None = None, **kw: Any) -> RetryPolicy:
    return RetryPolicy(clock=clock or Clock(), rng=rng or Draws(), **kw)


def record(p: RetryPolicy, max_retries: int | None = None, deadline: float = 1e9, **kw: Any) -> CallRecord:
    return p.start("POST /inference", deadline, max_retries, **kw)


def server(status: int, retry_after: float | None = None) -> ex.PioneerServerError:
    return ex.PioneerServerError(f"HTTP {status}", status=status, retry_after=retry_after)


def warming(retry_after: float | None = None) -> ex.PioneerModelWarmingError:
    return ex.PioneerModelWarmingError("warming", status=425, retry_after=retry_after)


def test_backoff_ceiling_doubles_from_the_base_up_to_the_cap() -> None:
    p = policy(backoff_base=0.5, backoff_cap=3.0)
    assert [p.backoff_ceiling(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_the_wait_is_full_jitter_under_the_ceiling_of_the_next_retry() -> None:
    rng = Draws(fraction=0.5)
    p = policy(rng=rng, max_retries=4)
    call = record(p)
    waits = [p.next_wait(call, server(503)) for _ in range(4)]
    assert rng.asked == [(0.0, 1.0), (0.0, 2.0), (0.0, 4.0), (0.0, 8.0)]
    assert waits == [0.5, 1.0, 2.0, 4.0]
    assert (call.retries, call.attempts) == (4, 5)
    assert p.next_wait(call, server(503)) is None  # the budget is spent
    assert call.tries() == " (5 attempts)"


@pytest.mark.parametrize(
    ("outcome", "retried"),
    [
        (server(500), True),
        (server(529), True),
        (server(408), True),
        (server(501), False),
        (ex.PioneerRateLimitError("429", status=429), True),
        (ex.PioneerSpendCapError("429 cap", status=429), False),
        (ex.PioneerCreditCeilingError("403", status=403), False),
        (ex.PioneerAuthError("401", status=401), False),
        (ex.PioneerValidationError("422", status=422), False),
        (ex.PioneerResponseError("not JSON", status=200), False),
        (Failure.CONNECT, True),
        (Failure.READ_TIMEOUT, True),
        (Failure.DEADLINE, False),
        (Failure.OTHER, False),
    ],
)
def test_each_outcome_carries_its_verdict(outcome: Any, retried: bool) -> None:
    p = policy()
    call = record(p)
    assert p.should_retry(call, outcome) is retried
    assert (p.next_wait(call, outcome) is not None) is retried
    assert call.retries == (1 if retried else 0)


def test_no_retry_when_the_budget_is_zero() -> None:
    p = policy(max_retries=5)
    call = record(p, max_retries=0)  # a call that must never be repeated (POST /create-api-key)
    assert p.next_wait(call, server(503)) is None
    assert p.next_wait(call, Failure.CONNECT) is None


def test_a_read_timeout_is_retried_once_where_the_work_may_be_billed() -> None:
    p = policy(max_retries=5)
    billed = record(p, read_timeout_once=True)
    assert p.next_wait(billed, Failure.READ_TIMEOUT) is not None
    assert p.next_wait(billed, Failure.READ_TIMEOUT) is None
    other = record(p)
    assert all(p.next_wait(other, Failure.READ_TIMEOUT) is not None for _ in range(5))
    # A connection failure in between is not a read timeout: it does not use up the one retry.
    mixed = record(p, read_timeout_once=True)
    assert p.next_wait(mixed, Failure.CONNECT) is not None
    assert p.next_wait(mixed, Failure.READ_TIMEOUT) is not None


def test_no_retry_starts_when_its_wait_would_reach_the_deadline() -> None:
    clock = Clock()
    p = policy(clock=clock, rng=Draws(fraction=1.0), max_retries=10)
    call = record(p, deadline=clock.now + 3.5)
    assert p.next_wait(call, server(503)) == 1.0
    clock.now += 1.0
    assert p.next_wait(call, server(503)) == 2.0
    clock.now += 2.0  # 0.5 s left: the next wait (4 s) would pass it
    assert p.next_wait(call, server(503)) is None
    assert call.retries == 2


def test_a_warming_model_spends_the_warmup_budget_not_the_retries() -> None:
    clock = Clock()
    rng = Draws(fraction=0.25)
    p = policy(clock=clock, rng=rng, max_retries=0, warmup_timeout=60.0)
    call = record(p)
    assert p.warmup_spent() == 0.0
    assert p.next_wait(call, warming()) == 0.25  # uniform(0, 1): spreads the threads the gate frees
    assert rng.asked == [(0.0, 1.0)]
    clock.now += 59.0
    assert p.warmup_spent() == 59.0
    assert p.next_wait(call, warming()) is not None
    assert (call.retries, call.attempts) == (0, 3)
    clock.now += 1.0
    assert p.next_wait(call, warming()) is None  # 60 s of warm-up spent


def test_the_warmup_clock_is_the_clients_and_a_success_restarts_it() -> None:
    clock = Clock()
    p = policy(clock=clock, warmup_timeout=10.0)
    assert p.next_wait(record(p), warming()) is not None
    clock.now += 10.0
    assert p.next_wait(record(p), warming()) is None  # another call: the same spent budget
    p.on_success()
    assert p.warmup_spent() == 0.0
    assert p.next_wait(record(p), warming()) is not None


def test_the_server_wait_is_capped() -> None:
    p = policy(max_retry_after=30.0)
    assert p.server_wait(server(503, retry_after=3600.0)) == 30.0
    assert p.server_wait(server(503, retry_after=2.5)) == 2.5
    assert p.server_wait(server(503)) is None


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ex.PioneerRateLimitError("429", status=429, retry_after=3600.0), [("on_rate_limited", 120.0)]),
        (ex.PioneerRateLimitError("429", status=429), [("on_rate_limited", None)]),
        (warming(), [("hold", DEFAULT_WARMUP_WAIT)]),
        (warming(retry_after=12.0), [("hold", 12.0)]),
        (server(503, retry_after=3.0), [("hold", 3.0)]),
        (server(503), []),
        (ex.PioneerSpendCapError("cap", status=429, retry_after=3600.0), []),
        (ex.PioneerPaymentRequiredError("402", status=402, retry_after=60.0), []),
    ],
)
def test_the_gate_holds_every_thread_for_what_the_server_asked(
    error: ex.PioneerError, expected: list[tuple[str, Any]]
) -> None:
    pacer = Pacer()
    policy().hold_gate(error, pacer)  # type: ignore[arg-type]
    assert pacer.calls == expected
