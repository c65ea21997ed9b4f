"""The adaptive default pace: rate-limit headers, 429 episodes, lying headers, and tasks sharing one
account on every limiter model (issue 17).

Pure logic with a fake clock and seeded randomness; the shared-account cases run in the
deterministic simulation of ``pacing_sim`` (simulated time, so asserting on throughput is
not a timing assert). Real processes against the emulator: ``tests/integration/
test_pacing_limiter_models.py`` and benchmark scenario D.
"""

from __future__ import annotations

import math
import random
import threading
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from airflow_provider_pioneer.pacing import (
    DOCUMENTED_REQUESTS_PER_MINUTE,
    AdaptiveRate,
    Pacer,
    RateLimitHeaders,
    parse_rate_limit_headers,
)
from airflow_provider_pioneer.pacing.belief import HeaderBelief
from tests.unit.pacing_sim import (
    SERVERS,
    Server,
    TokenBucketServer,
    adaptive_tasks,
    simulate,
)

WALL = 1_790_000_000.0  # a Unix time in 2026


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make(rpm: float | None = None, seed: int = 1) -> tuple[Pacer, FakeClock]:
    clock = FakeClock()
    pacer = Pacer(rpm, clock=clock, sleep=clock.sleep, wall_clock=lambda: WALL, rng=random.Random(seed))
    return pacer, clock


def budget(remaining: float, reset: str | float, limit: float | str = 5000) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset": str(reset),
    }


# -- reading the headers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (budget(4212, 37), RateLimitHeaders(5000, 4212, 37.0)),
        (budget(10, WALL + 12.5), RateLimitHeaders(5000, 10, 12.5)),  # epoch seconds
        (budget(10, format_datetime(datetime.fromtimestamp(WALL + 30, UTC), usegmt=True)),
         RateLimitHeaders(5000, 10, 30.0)),  # an HTTP date
        (budget(7, 3, limit="5000;w=60"), RateLimitHeaders(5000, 7, 3.0, window=60.0)),
        (budget(7, 3, limit="5000, 5000;w=60"), RateLimitHeaders(5000, 7, 3.0, window=60.0)),
        ({"x-ratelimit-remaining": "5", "x-ratelimit-reset": "2"}, RateLimitHeaders(None, 5, 2.0)),
        (budget(3, WALL - 5), RateLimitHeaders(5000, 3, 0.0)),  # a reset just past: whole now
    ],
)  # fmt: skip
def test_rate_limit_headers_are_read_in_every_format(
    headers: dict[str, str], expected: RateLimitHeaders
) -> None:
    assert parse_rate_limit_headers(headers, WALL) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-RateLimit-Limit": "5000"},
        budget("many", 10),
        budget(10, "soon"),
        budget(10, WALL + 86_400),  # a day away: not a per-minute budget we can spread
        {"X-RateLimit-Remaining": "10"},
    ],
)
def test_unreadable_or_partial_headers_count_as_absent(headers: dict[str, str]) -> None:
    assert parse_rate_limit_headers(headers, WALL) is None


# -- one task, the server's budget ------------------------------------------------------------------


def test_a_window_budget_is_spread_over_the_time_to_its_reset() -> None:
    pacer, _ = make()
    # 400 spendable over 19.5 s (Reset is whole seconds, rounded up: half a second sooner on
    # average); the margin keeps two requests and what one round trip of the account draws.
    pacer.observe(200, budget(402, 20))
    assert 1150 <= (pacer.rate_per_minute or 0) <= 1250
    assert pacer.pace_source == "server headers"


def test_a_spent_budget_holds_every_send_until_the_reset_and_respects_the_deadline() -> None:
    pacer, clock = make()
    pacer.observe(429, budget(0, 5))
    assert pacer.acquire(deadline=clock.now + 2) is False  # waiting would pass the deadline
    assert clock.sleeps == []
    assert pacer.held_for() == pytest.approx(4.5, abs=0.3)
    assert pacer.describe().endswith("s until the server's rate-limit budget resets")
    start = clock.now
    assert pacer.acquire()
    assert 4.5 <= clock.now - start <= 4.8  # the reset, plus a small per-task offset


def test_the_budget_raises_the_pace_back_when_the_window_resets() -> None:
    pacer, clock = make()
    pacer.observe(200, budget(3, 10))  # 1 left over 10 s: one request every 10 s
    pacer.acquire()
    clock.now += 10.5  # the window reset; the next answer announces a whole budget
    pacer.observe(200, budget(4999, 59.5))
    before = clock.now
    pacer.acquire()
    pacer.acquire()
    # Paced at ~84/s again, not one per 10 s (a slot booked at the slow pace may still be waited
    # out once: a single answer does not tell a fixed window from a bucket).
    assert clock.now - before < 1.0


def test_headers_never_push_the_pace_above_the_ceiling() -> None:
    pacer, _ = make(rpm=1200)
    pacer.observe(200, budget(5000, 60))
    assert pacer.rate_per_minute == pytest.approx(1200)
    assert pacer.ceiling_per_minute == 1200
    assert (pacer.describe(), pacer.pace_source) == ("pace 1,200/min", "ceiling")


def test_an_advertised_limit_above_the_documented_one_is_used() -> None:
    ctl = AdaptiveRate(rng=random.Random(0))
    ctl.on_headers(RateLimitHeaders(limit=12_000, remaining=12_000, reset_in=0.0), now=0.0)
    assert ctl.top * 60 == pytest.approx(12_000)
    for i in range(400):
        ctl.on_success(i * 0.005, i * 0.005)
    assert ctl.aimd * 60 == pytest.approx(12_000)


# -- the user's ceiling is the user's word ----------------------------------------------------------


def test_a_ceiling_is_where_the_pace_starts_not_a_sixteenth_of_it() -> None:
    pacer, _ = make(rpm=1200)
    assert pacer.rate_per_minute == pytest.approx(1200)
    assert pacer.pace_source == "ceiling"


@pytest.mark.parametrize("seconds", [10, 600])
def test_one_task_with_a_ceiling_reaches_it_for_a_short_job_as_for_a_long_one(seconds: int) -> None:
    """Issue 17: one task, ``requests_per_minute=1200``, no headers, on an account that allows
    more: at least 95% of the ceiling. The slow start below the ceiling gave 75-80% for 10 s."""
    ceiling = 1200
    quota = ceiling // 60 * seconds
    result = simulate(
        adaptive_tasks(1, ceiling_rpm=ceiling), TokenBucketServer(5000), seconds=seconds * 3,
        latency=0.05, headers=False, quota=quota, latency_jitter=0.05,
    )  # fmt: skip
    assert quota / result.finished_at[0] >= 0.95 * ceiling / 60
    assert result.rate_limited == 0


def test_without_headers_and_without_a_ceiling_the_pace_starts_low_and_climbs_to_the_documented_limit() -> (
    None
):
    pacer, _clock = make()
    assert pacer.rate_per_minute == pytest.approx(DOCUMENTED_REQUESTS_PER_MINUTE / 16)
    assert pacer.pace_source == "starting"
    for _ in range(2000):
        pacer.acquire()
        pacer.on_success()
    assert pacer.rate_per_minute == pytest.approx(DOCUMENTED_REQUESTS_PER_MINUTE)
    assert (pacer.describe(), pacer.pace_source) == ("pace 5,000/min", "documented limit")


# -- 429 episodes, holds, jitter --------------------------------------------------------------------


def test_all_the_429s_of_one_overload_are_one_decrease() -> None:
    pacer, _clock = make()
    for _ in range(2000):  # climb to the top first
        pacer.acquire()
        pacer.on_success()
    top = pacer.rate_per_minute
    assert top is not None
    sent = threading.Barrier(8)
    answered = threading.Event()

    def worker() -> None:  # eight requests in flight when the limit is hit
        pacer.acquire()
        sent.wait()
        answered.wait()
        pacer.on_rate_limited(None)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    answered.set()
    for t in threads:
        t.join(10)
    after_episode = pacer.rate_per_minute
    assert after_episode is not None and after_episode < top
    assert after_episode >= top * 0.5  # one decrease (to 85% of what was delivered), not eight (27%)
    pacer.acquire()  # sent after the decrease: its 429 is a new episode
    pacer.on_rate_limited(None)
    assert (pacer.rate_per_minute or 0) < after_episode


def test_a_slot_booked_at_a_slow_pace_is_pulled_in_when_the_pace_rises() -> None:
    """429s before a task's first answers set its pace at the floor (a request every 12 s at
    5,000/min); the answers in flight raised it again, but the slot booked at the floor held all
    of the task's threads until then (the benchmark's shards idle 12 s, 1,200/min, P = 16)."""
    pacer, clock = make()
    for _ in range(3):  # three 429 episodes before any answer: the pace falls to the floor
        assert pacer.acquire()
        pacer.on_rate_limited(None)
    assert (pacer.rate_per_minute or 0) <= 10
    assert pacer.acquire()  # leaves now, and the next slot is ~12 s away at this pace
    for _ in range(8):  # the requests in flight are answered: the pace is back up
        pacer.on_success()
    assert (pacer.rate_per_minute or 0) >= 100
    start = clock.now
    assert pacer.acquire()
    assert clock.now - start <= 1.0


def test_threads_held_for_a_fixed_window_s_reset_leave_one_at_it_not_all() -> None:
    """A spent fixed window: one request leaves at its reset, the others at the pace its answers
    set. Every slot was pulled in to the reset, so every thread of a task left there together
    (real processes, P = 8: 8 requests within 3 ms per task, 64 of a window's 100 in its first
    second, and 5-8 429s per task whenever the reset was estimated early)."""
    pacer, clock = make()
    end = clock.now + 5.0  # a 5-s fixed window of 100 requests, from now
    left = 99
    while clock.now < end - 0.3:  # its first 4.7 s, answered 30 ms after each request
        assert pacer.acquire()
        clock.now += 0.03
        pacer.observe(200, budget(left, math.ceil(end - clock.now), limit=100))
        pacer.on_success()
        left = max(0, left - 3)  # others draw too: spent before the end
    assert pacer._control.reset_at(clock.now) is not None  # seen as a fixed window
    sends = []
    for _ in range(8):  # eight threads in turn, no answer yet
        assert pacer.acquire()
        sends.append(clock.now)
    assert sends[0] >= end - 0.6  # not before the estimated reset (+ jitter)
    assert sends.count(sends[0]) <= 2, sends  # the slot at the reset (and one pulled in by the new pace)
    assert sends[-1] - sends[0] >= 0.3, sends  # the others spread at the pace, not all at once


def test_a_retry_after_holds_with_jitter_so_tasks_do_not_restart_together() -> None:
    waits = []
    for seed in range(5):
        pacer, clock = make(seed=seed)
        pacer.on_rate_limited(2.0)
        assert "held 2 s by the server's Retry-After" in pacer.describe()
        start = clock.now
        pacer.acquire()
        waits.append(clock.now - start)
    assert all(2.0 <= w <= 2.0 * (1 + AdaptiveRate.GATE_JITTER) for w in waits)
    assert len({round(w, 6) for w in waits}) == len(waits)  # five tasks, five restart times


def test_hold_for_other_statuses_has_no_jitter_and_sleep_uses_the_injected_sleep() -> None:
    pacer, clock = make()
    pacer.hold(3.0)  # a 425 / 503 Retry-After
    assert pacer.held_for() == pytest.approx(3.0)
    start = clock.now
    pacer.acquire()
    assert clock.now - start == pytest.approx(3.0)
    assert pacer.held_for() == 0.0
    pacer.sleep(1.5)  # a retry backoff
    assert clock.sleeps[-1] == 1.5


def test_the_pacer_tells_its_controller_every_hold_so_waiting_is_not_counted_as_crowding() -> None:
    pacer, clock = make()
    control = pacer._control
    assert isinstance(control, AdaptiveRate)
    pacer.on_rate_limited(1.0)  # a 429's Retry-After, plus at most a tenth of it as jitter
    pacer.hold(3.0)  # then a 425's, overlapping it: one held stretch
    assert list(control._delivery._holds) == [(clock.now, pytest.approx(clock.now + 3.0))]


def test_pacing_intervals_are_jittered_around_the_rate() -> None:
    ctl = AdaptiveRate(rng=random.Random(3))
    spacings = [ctl.spacing(10.0) for _ in range(200)]
    assert min(spacings) >= 0.1 * (1 - AdaptiveRate.SPACING_JITTER)
    assert max(spacings) <= 0.1 * (1 + AdaptiveRate.SPACING_JITTER)
    assert sum(spacings) / len(spacings) == pytest.approx(0.1, rel=0.03)


def test_the_fixed_pace_of_earlier_releases_is_still_available() -> None:
    pacer = Pacer(1200, adaptive=False)
    pacer.observe(200, budget(1, 60))  # ignored
    assert pacer.rate_per_minute == pytest.approx(1200)
    assert (pacer.describe(), pacer.pace_source) == ("pace 1,200/min", "fixed")


# -- headers that lie ---------------------------------------------------------------------------------


def _answers(ctl: AdaptiveRate, readings: list[tuple[float | None, float, float]], t: float = 0.0) -> float:
    """Feed ``(limit, remaining, reset)`` answers 10 ms apart, each a success; the time after."""
    for limit, remaining, reset in readings:
        ctl.on_sent(t)
        t += 0.01
        ctl.on_headers(RateLimitHeaders(limit, remaining, reset), t, t - 0.03)
        ctl.on_success(t, t - 0.03)
    return t


def test_a_limit_below_what_remains_is_ignored_with_a_warning_not_paced_at() -> None:
    """``Limit: 1`` with ``Remaining: 4000`` paced the earlier controller at one request a minute."""
    ctl = AdaptiveRate(rng=random.Random(0))
    t = _answers(ctl, [(1, 4000 - i, 30) for i in range(50)])
    assert ctl.rate(t) * 60 >= 5000  # about 4,000 over 30 s, not 1 a minute
    assert any("X-RateLimit-Limit (1) is below X-RateLimit-Remaining" in n for n in ctl.notices)


def test_a_per_second_limit_without_a_window_paces_per_second() -> None:
    """``Limit: 20``, ``Reset: 1``, no ``w=``: 20 per second. Read as 20 per minute, the earlier
    controller paced at 6% of the bound without a word."""
    ctl = AdaptiveRate(rng=random.Random(0))
    t = _answers(ctl, [(20, 19 - (i % 10), 1) for i in range(60)])
    assert ctl.rate(t) >= 10  # per second


def test_a_reset_far_beyond_the_recent_ones_slows_at_most_tenfold_with_a_warning() -> None:
    ctl = AdaptiveRate(rng=random.Random(0))
    t = _answers(ctl, [(5000, 4000 - i, 30) for i in range(50)])
    before = ctl.rate(t)
    # A clock gone wrong: 50 minutes, for the same budget (a budget one lower also slows the pace).
    t = _answers(ctl, [(5000, 3951, 3000)], t)
    assert before / HeaderBelief.LIE_FACTOR * (1 - 1e-9) <= ctl.rate(t) < before  # a tenth, to rounding
    t = _answers(ctl, [(5000, 0, 3000)], t)  # and "spent" until then: held ten resets, not 3000 s
    assert ctl.not_before(t) - t <= HeaderBelief.LIE_FACTOR * 30
    assert any("X-RateLimit-Reset jumped to 3000 s" in n for n in ctl.notices)


@pytest.mark.parametrize("reset", ["-5", "soon", str(WALL + 86_400)])
def test_a_negative_unreadable_or_day_long_reset_counts_as_no_header(reset: str) -> None:
    pacer, _ = make()
    pacer.observe(200, budget(10, reset))
    assert pacer.pace_source == "starting"  # not paced by it


def test_a_task_far_below_what_the_headers_allow_is_warned_about() -> None:
    """Issue 17: a pace far below what the headers allow was silent (38% of the bound, no word)."""
    ctl = AdaptiveRate(rng=random.Random(0))
    t = 0.0
    for i in range(40):  # one answer a second while the budget allows about 80 a second
        ctl.on_sent(t)
        t += 1.0
        ctl.on_headers(RateLimitHeaders(5000, 4900 - i, 58), t, t - 0.05)
        ctl.on_success(t, t - 0.05)
    assert any("headers allow this task about" in n and "raise max_concurrency" in n for n in ctl.notices)
    busy = AdaptiveRate(rng=random.Random(0))
    _answers(busy, [(5000, 4900, 58)] * 3000)  # 100 answers a second: keeping up, no warning
    assert not any("headers allow" in n for n in busy.notices)


def test_the_pacer_logs_what_the_controller_warns_of(caplog: pytest.LogCaptureFixture) -> None:
    pacer, _ = make()
    with caplog.at_level("WARNING", logger="airflow_provider_pioneer.pacing.pacer"):
        pacer.observe(200, budget(4000, 30, limit=1))
        pacer.observe(200, budget(3999, 30, limit=1))
    warned = [r.getMessage() for r in caplog.records if "Pioneer pacing" in r.getMessage()]
    assert len(warned) == 1 and "ignoring the limit" in warned[0]  # once, not per answer


# -- many tasks, one account, every limiter model (simulated time) -----------------------------------

#: Each model as the issue's servers run it: Pioneer's own token bucket (5,000/min, a second deep),
#: and the window models at 1,200 per 60-s window (slowapi's "1200/minute", ``Limit`` sent bare).
SETUPS: dict[str, tuple[float, float]] = {  # model: (requests per minute, job seconds at the bound)
    "token_bucket": (5000, 30),
    "fixed_window": (1200, 240),
    "moving_window": (1200, 240),
    "sliding_window": (1200, 240),
}


def _job(
    model: str, tasks: int, *, headers: bool, apart: bool, seed: int = 0, window: float = 60.0
) -> tuple[float, float, float]:
    """Shards of one job: (share of the bound job-wide, share of requests answered 429, the
    slowest shard's rate over its life against its fair share)."""
    rpm, work_s = SETUPS[model]
    server: Server = TokenBucketServer(rpm) if model == "token_bucket" else SERVERS[model](rpm, window=window)
    bound = rpm / 60
    quota = int(bound * work_s) // tasks
    rng = random.Random(seed + tasks)
    starts = sorted(rng.uniform(0, (0.5 if apart else 0.05) * tasks) for _ in range(tasks))
    result = simulate(
        adaptive_tasks(tasks, seed=seed + tasks), server, seconds=work_s * 5, latency=0.03, quota=quota,
        starts=starts, headers=headers, seed=seed, latency_jitter=0.03,
    )  # fmt: skip
    assert max(result.finished_at) < math.inf, "a shard never finished"
    job = quota * tasks / (max(result.finished_at) - starts[0]) / bound
    fair = min(
        quota / (end - start) / (bound / tasks) for end, start in zip(result.finished_at, starts, strict=True)
    )
    return job, result.share_429, fair


@pytest.mark.parametrize("apart", [False, True], ids=["together", "apart"])
@pytest.mark.parametrize("tasks", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("model", list(SETUPS))
def test_with_headers_shards_spend_every_limiter_model_near_its_bound(
    model: str, tasks: int, apart: bool
) -> None:
    """Issue 17's targets with headers: at least 95% of the bound and at most 1% of requests
    answered 429, met for P = 1 to 16 on the bucket and the fixed window and for P = 1 to 8 on the
    sliding log and counter; no shard below half its fair share. Measured, not met here: the
    sliding log and counter at P = 16 (0.9-1.9% 429s) and 32 (4.3-4.7%). Before, the sliding
    windows' first window (whose oldest request stays put) was taken for a fixed window for good,
    so a spent budget was waited out to its whole-second reset by every task, which then left
    together: 2-3% 429s at P = 8, 7-9% at 16. The earlier controller reached 38% of the bound
    on a sliding window."""
    job, share_429, fair = _job(model, tasks, headers=True, apart=apart)
    assert job >= (0.95 if tasks <= 16 else 0.90)
    if model in ("token_bucket", "fixed_window"):
        max_429 = 0.01 if tasks <= 16 else 0.03
    else:
        max_429 = 0.01 if tasks <= 8 else 0.025 if tasks <= 16 else 0.06
    assert share_429 <= max_429
    assert fair >= 0.5


@pytest.mark.parametrize("apart", [False, True], ids=["together", "apart"])
@pytest.mark.parametrize("tasks", [4, 8])
def test_shards_with_headers_spend_short_fixed_windows_without_429s(tasks: int, apart: bool) -> None:
    """The benchmark's 5-s fixed windows of 100 requests (1,200/min), where a task hears the
    budget every few tenths of a second. Three defects: a pair of answers across the window's
    end (its ``Reset`` known to a second only) read as the others giving back 99 requests, and a
    task's own 429s counted as its draw (tasks took themselves for 1-4 of 8); and the pace was
    counted to the reset from now, so a task sped up between its answers. Before:
    each window was spent by its last half second; at P = 8, 2.3-2.4% of requests answered 429
    (5.6% with 50 ms answers), at P = 4 the job at 94% of the bound."""
    job, share_429, fair = _job("fixed_window", tasks, headers=True, apart=apart, window=5.0)
    assert job >= 0.95
    assert share_429 <= 0.015
    assert fair >= 0.5


@pytest.mark.parametrize("window", [5.0, 60.0])
@pytest.mark.parametrize("model", ["fixed_window", "moving_window", "sliding_window"])
def test_a_task_alone_does_not_take_a_window_counting_down_for_others_drawing(
    model: str, window: float
) -> None:
    """A window's first seconds (every window of a fixed one, a sliding log's first) free nothing:
    the reset stays put while the budget falls. The estimate counted the advertised refill
    there as drawn by others: a task alone took itself for one of 3.5 a second in."""
    ctl = adaptive_tasks(1)[0]
    simulate([ctl], SERVERS[model](1200, window=window), seconds=min(window, 5.0) * 0.8, headers=True)
    assert ctl.sharers < 1.2


@pytest.mark.parametrize("apart", [False, True], ids=["together", "apart"])
@pytest.mark.parametrize("tasks", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("model", list(SETUPS))
def test_retry_after_alone_keeps_every_limiter_model_busy(model: str, tasks: int, apart: bool) -> None:
    """Issue 17's targets without headers: at least 85% of the bound and at most 5% of requests
    answered 429, for P = 1 to 16; no shard below half its fair share. Measured, not met: the
    sliding-window counter from P = 4 (4.5-14% 429s: its Retry-After is about a second while a
    slot frees in 50 ms, so every task learns the limit by its own 429s), and P = 32 (up to 9%)."""
    job, share_429, fair = _job(model, tasks, headers=False, apart=apart)
    assert job >= 0.85
    if model == "sliding_window":
        assert share_429 <= 0.03 * tasks**0.5 * 1.5
    else:
        assert share_429 <= (0.05 if tasks <= 16 else 0.10)
    assert fair >= 0.5


def test_the_simulated_limiters_count_as_the_emulators_limits_library_does() -> None:
    """The simulation's window servers follow the ``limits`` library's strategies (the emulator's
    limiters): the same request times are allowed or refused alike, with the same Remaining."""
    from airflow_provider_pioneer.testing.limiters import make_limiter

    rng = random.Random(7)
    for model in ("fixed_window", "moving_window", "sliding_window"):
        now = [120.0]  # whole windows in: limits keys windows by the clock's multiples
        real = make_limiter(model, 600, window_s=6.0, clock=lambda now=now: now[0])
        sim = SERVERS[model](600, window=6.0)
        t = 120.0
        for _ in range(400):
            t += rng.expovariate(15.0)
            now[0] = t
            allowed = real.hit() == 0.0
            ok, _, info = sim.take(t)
            assert ok == allowed, (model, t)
            assert float(real.headers()["X-RateLimit-Remaining"]) == info.remaining, (model, t)


@pytest.mark.parametrize("tasks", [1, 2, 4, 8])
def test_shards_started_apart_on_a_small_bucket_share_it_fairly_and_end_near_the_bound(tasks: int) -> None:
    """Issue 17's fairness target on the benchmark's failing case: a 1,200/min token bucket one
    second deep, answers slowed as on a busy machine (30 ms plus 100 ms on average), half the
    shards starting 8 s after the others (an unequal split to begin with). Every shard gets at
    least half its fair share over its life and the job ends within 1.2x the bound's time.

    The controller before this counted a full bucket's unused refill as the others' draw: a task
    alone took itself for one of ten or twenty and crawled (P = 1 never finished its 500
    requests in 200 s; P = 4 took 4.6-6.6x the bound's time). Measured, not met here: P = 16
    (31 requests a shard, 1.2-1.6x)."""
    bound = 1200 / 60
    quota = 500 // tasks
    starts = [0.0 if i < max(1, tasks // 2) else 8.0 for i in range(tasks)]
    for seed in range(3):
        result = simulate(
            adaptive_tasks(tasks, seed=seed + tasks), TokenBucketServer(1200), seconds=200, latency=0.03,
            quota=quota, starts=starts, headers=True, seed=seed, latency_jitter=0.1,
        )  # fmt: skip
        assert max(result.finished_at) <= 1.2 * quota * tasks / bound, (seed, result.finished_at)
        for end, start in zip(result.finished_at, starts, strict=True):
            assert quota / (end - start) >= 0.5 * bound / tasks, (seed, result.finished_at)
        assert result.share_429 <= 0.01


# -- a task alone on a short fixed window, answers slowed as on a busy machine (issue 17) -----------


@pytest.mark.parametrize(("jitter", "at_least"), [(0.0, 0.95), (0.08, 0.87)], ids=["quiet", "busy"])
def test_a_task_alone_spends_a_short_fixed_window_to_its_end(jitter: float, at_least: float) -> None:
    """The benchmark's shortfall: one task on 5-s fixed windows of 100 requests (1,200/min) reached
    82-93% of the bound, keeping about a tenth of each window unspent. Three causes, each measured
    here (30 ms answers, plus 80 ms on average when busy: 20-200 ms as on 2 loaded cores; a 25-s
    job, five windows, its windows off the whole seconds): the margin estimated the task's own
    requests in flight as its pace times a slow round trip plus four deviations (8-12 requests
    when busy) where it can count them; answers that overtook others replaced the budget in hand
    with an older one (the last window's "24 left" after the new window's "99": the estimate of
    the sharers doubled, and the fixed window was taken for one that frees); and the last second
    of each window was paced as if half a second remained (``Reset: 1``). Before: 92% quiet,
    74-85% busy."""
    rpm, window, work_s = 1200, 5.0, 25
    bound = rpm / 60
    quota = int(bound * work_s)
    for seed in range(3):
        start = random.Random(seed).uniform(0, window)  # windows start at the first request
        result = simulate(
            adaptive_tasks(1, seed=seed), SERVERS["fixed_window"](rpm, window=window), seconds=start + work_s * 6,
            latency=0.03, quota=quota, starts=[start], headers=True, seed=seed, latency_jitter=jitter,
        )  # fmt: skip
        assert quota / (result.finished_at[0] - start) / bound >= at_least, seed
        assert result.rate_limited == 0


def _window_answers(ctl: AdaptiveRate, t: float, remaining: range, reset: float) -> float:
    """Answers 50 ms apart, each 30 ms after its request, announcing ``remaining`` in turn."""
    for left in remaining:
        ctl.on_sent(t)
        t += 0.03
        ctl.on_headers(RateLimitHeaders(100, left, reset), t, t - 0.03)
        ctl.on_success(t, t - 0.03)
        t += 0.02
    return t


def test_an_answer_overtaken_by_a_later_one_does_not_replace_the_budget_in_hand() -> None:
    """On a busy machine answers 20-200 ms apart pass each other: the previous window's last
    answer ("20 left") came after the new window's first ("99 left"). Taken as the latest, it
    read as 79 requests drawn by others in 30 ms and as a reset that moved on a fixed window."""
    ctl = AdaptiveRate(rng=random.Random(0))
    t = _window_answers(ctl, 0.0, range(99, 59, -1), 5)  # two seconds of a fixed window: its reset stays put
    t = _window_answers(ctl, t, range(59, 20, -1), 3)
    assert not ctl._share.frees
    slow_sent = t  # a request that left now, answered late
    ctl.on_sent(slow_sent)
    t = _window_answers(ctl, t + 0.6, range(99, 97, -1), 5)  # the new window, answered first
    sharers, pace = ctl.sharers, ctl.rate(t)
    ctl.on_headers(RateLimitHeaders(100, 20, 1), t, slow_sent)  # the old window's answer, late
    assert ctl.sharers == pytest.approx(sharers)
    assert not ctl._share.frees
    assert ctl._reading is not None and ctl._reading.remaining == 98  # the new window's budget
    assert ctl.rate(t) >= 0.8 * pace  # only the slow round trip is learnt from the late answer
