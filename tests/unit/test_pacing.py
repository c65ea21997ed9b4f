"""Pacer: steady spacing, the shared Retry-After gate, and the fixed pace of earlier releases (fake clock).

The adaptive default is tested in test_adaptive_pacing.py.
"""

from __future__ import annotations

import pytest

from airflow_provider_pioneer.pacing import Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(rpm: float | None, **kw: object) -> tuple[Pacer, FakeClock]:
    clock = FakeClock()
    return Pacer(rpm, clock=clock, sleep=clock.sleep, **kw), clock  # type: ignore[arg-type]


def test_steady_rate_spaces_requests_evenly() -> None:
    pacer, clock = make(1200, adaptive=False)  # one every 50 ms
    start = clock.now
    for _ in range(21):
        assert pacer.acquire()
    assert clock.now - start == pytest.approx(1.0)  # 21 requests: first at 0, last at 1.0 s


def test_burst_lets_a_few_through_after_idle() -> None:
    pacer, clock = make(60, adaptive=False, burst=3)  # one a second
    clock.now += 10
    for _ in range(3):
        pacer.acquire()
    assert clock.sleeps == []
    pacer.acquire()
    assert clock.sleeps and clock.sleeps[-1] == pytest.approx(1.0)


def test_no_rate_means_no_wait_when_not_adaptive() -> None:
    pacer, clock = make(None, adaptive=False)
    for _ in range(100):
        pacer.acquire()
    assert clock.sleeps == []


def test_retry_after_gate_holds_every_caller() -> None:
    pacer, clock = make(None, adaptive=False)
    pacer.on_rate_limited(2.0)
    pacer.acquire()
    assert clock.sleeps == [pytest.approx(2.0)]
    pacer.acquire()  # gate already passed
    assert len(clock.sleeps) == 1


def test_fixed_pace_slows_on_429_and_success_restores_it() -> None:
    pacer, _ = make(1200, adaptive=False)
    pacer.on_rate_limited(None)
    assert pacer.rate_per_minute == pytest.approx(1080)
    for _ in range(50):
        pacer.on_success()
    assert pacer.rate_per_minute == pytest.approx(1200)


def test_fixed_pace_never_goes_below_the_floor() -> None:
    pacer, _ = make(1200, adaptive=False)
    for _ in range(200):
        pacer.on_rate_limited(None)
    assert pacer.rate_per_minute == pytest.approx(1200 * Pacer.MIN_RATE_FRACTION)


def test_acquire_refuses_a_wait_past_the_deadline() -> None:
    pacer, clock = make(None)
    pacer.hold(30)
    assert pacer.acquire(deadline=clock.now + 5) is False
    assert clock.sleeps == []


def test_rejects_nonpositive_rate() -> None:
    with pytest.raises(ValueError, match="requests_per_minute"):
        Pacer(0)


def test_a_gate_closed_while_waiting_on_a_slot_still_holds_that_caller() -> None:
    clock = FakeClock()
    pacer: Pacer

    def sleep(seconds: float) -> None:
        clock.sleep(seconds)
        if len(clock.sleeps) == 1:  # another thread's 429 arrives while this one waits
            pacer.on_rate_limited(5.0)

    pacer = Pacer(60, adaptive=False, clock=clock, sleep=sleep)
    pacer.acquire()  # slot at t=100
    start = clock.now
    pacer.acquire()  # slot at t=101; the 429 at t=101 closes the gate until t=106
    assert clock.now - start == pytest.approx(6.0)


def test_threads_held_by_a_retry_after_leave_one_slot_apart_when_it_ends() -> None:
    """Real threads, real clock: only lower bounds are asserted (a sleep never ends early)."""
    import threading
    import time

    pacer = Pacer(600)  # one slot every 0.1 s
    t0 = time.monotonic()
    pacer.acquire()  # slot at t0: the next four are t0+0.1 .. t0+0.4
    released: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        pacer.acquire()
        with lock:
            released.append(time.monotonic() - t0)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    pacer.hold(0.6 - (time.monotonic() - t0))  # a Retry-After closes the gate until t0+0.6
    for t in threads:
        t.join(10)
    assert len(released) == 4
    # Fresh slots after the gate: t0+0.6, 0.7, 0.8, 0.9. Without that, all four leave at t0+0.6.
    assert max(released) >= 0.85
