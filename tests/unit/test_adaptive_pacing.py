"""The adaptive default pace: rate-limit headers, 429 episodes, jitter, and tasks sharing one account.

Pure logic with a fake clock and seeded randomness; the shared-account cases run in the
deterministic simulation of ``pacing_sim`` (simulated time, so asserting on throughput is
not a timing assert). Real processes against the emulator are benchmark scenario D.
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
from tests.unit.pacing_sim import FixedWindowServer, TokenBucketServer, adaptive_tasks, simulate

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
    pacer.observe(200, budget(402, 20))  # 400 spendable (2 kept in hand) over 20 s: 20 per second
    assert pacer.rate_per_minute == pytest.approx(1200)
    assert (pacer.describe(), pacer.pace_source) == ("pace 1,200/min", "server headers")


def test_a_spent_budget_holds_every_send_until_the_reset_and_respects_the_deadline() -> None:
    pacer, clock = make()
    pacer.observe(429, budget(0, 5))
    assert pacer.acquire(deadline=clock.now + 2) is False  # waiting would pass the deadline
    assert clock.sleeps == []
    start = clock.now
    assert pacer.acquire()
    # Released at the reset, plus a small per-task offset so tasks waiting for it part.
    assert 5.0 <= clock.now - start <= 5.25


def test_the_budget_raises_the_pace_back_when_the_window_resets() -> None:
    pacer, clock = make()
    pacer.observe(200, budget(3, 10))  # 1 left over 10 s: one request every 10 s
    pacer.acquire()
    clock.now += 10.5  # the window reset; the next answer announces a whole budget
    pacer.observe(200, budget(4999, 59.5))
    before = clock.now
    pacer.acquire()
    pacer.acquire()
    assert clock.now - before < 0.1  # paced at ~84/s again, not one per 10 s


def test_headers_never_push_the_pace_above_the_ceiling() -> None:
    pacer, _ = make(rpm=1200)
    pacer.observe(200, budget(5000, 60))
    assert pacer.rate_per_minute == pytest.approx(1200)
    assert pacer.ceiling_per_minute == 1200
    assert (pacer.describe(), pacer.pace_source) == ("pace 1,200/min", "ceiling")


def test_an_advertised_limit_above_the_documented_one_is_used() -> None:
    ctl = AdaptiveRate(rng=random.Random(0))
    ctl.on_headers(RateLimitHeaders(limit=12_000, remaining=12_000, reset_in=0.0), now=0.0)
    for i in range(400):
        ctl.on_success(i * 0.005, i * 0.005)
    assert ctl.rate(2.0) * 60 == pytest.approx(12_000)


# -- one task, no headers: 429 feedback ------------------------------------------------------------


def test_without_headers_the_pace_starts_low_and_climbs_to_the_documented_limit_not_beyond() -> None:
    pacer, _clock = make()
    assert pacer.rate_per_minute == pytest.approx(DOCUMENTED_REQUESTS_PER_MINUTE / 16)
    assert pacer.pace_source == "starting"
    for _ in range(2000):
        pacer.acquire()
        pacer.on_success()
    assert pacer.rate_per_minute == pytest.approx(DOCUMENTED_REQUESTS_PER_MINUTE)
    assert (pacer.describe(), pacer.pace_source) == ("pace 5,000/min", "documented limit")


def test_a_ceiling_is_where_the_pace_tops_out() -> None:
    pacer, _ = make(rpm=1200)
    for _ in range(500):
        pacer.acquire()
        pacer.on_success()
    assert pacer.rate_per_minute == pytest.approx(1200)


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
    assert after_episode >= top * (1 - AdaptiveRate.DECREASE) - 1e-6  # one decrease, not eight
    pacer.acquire()  # sent after the decrease: its 429 is a new episode
    pacer.on_rate_limited(None)
    assert (pacer.rate_per_minute or 0) < after_episode


def test_a_retry_after_holds_with_jitter_so_tasks_do_not_restart_together() -> None:
    waits = []
    for seed in range(5):
        pacer, clock = make(seed=seed)
        pacer.on_rate_limited(2.0)
        start = clock.now
        pacer.acquire()
        waits.append(clock.now - start)
    assert all(2.0 <= w <= 2.0 * (1 + AdaptiveRate.GATE_JITTER) for w in waits)
    assert len({round(w, 6) for w in waits}) == len(waits)  # five tasks, five restart times


def test_hold_for_other_statuses_has_no_jitter_and_sleep_uses_the_injected_sleep() -> None:
    pacer, clock = make()
    pacer.hold(3.0)  # a 425 / 503 Retry-After
    start = clock.now
    pacer.acquire()
    assert clock.now - start == pytest.approx(3.0)
    pacer.sleep(1.5)  # a retry backoff
    assert clock.sleeps[-1] == 1.5


def test_the_pacer_tells_its_controller_every_hold_so_waiting_is_not_counted_as_crowding() -> None:
    pacer, clock = make()
    control = pacer._control
    assert isinstance(control, AdaptiveRate)
    pacer.on_rate_limited(1.0)  # a 429's Retry-After, plus at most a tenth of it as jitter
    pacer.hold(3.0)  # then a 425's, overlapping it: one held stretch
    assert list(control._holds) == [(clock.now, pytest.approx(clock.now + 3.0))]


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


# -- many tasks, one account (simulated time) ------------------------------------------------------


@pytest.mark.parametrize("tasks", [1, 4, 16])
def test_tasks_sharing_a_bucket_with_headers_use_it_without_429s(tasks: int) -> None:
    seconds = 60
    result = simulate(adaptive_tasks(tasks), TokenBucketServer(5000), seconds=seconds, latency=0.03)
    assert result.succeeded >= 0.95 * 5000 / 60 * seconds
    assert result.share_429 <= 0.01
    assert min(result.per_task) > 0


@pytest.mark.parametrize("tasks", [4, 16])
def test_tasks_sharing_a_fixed_window_with_headers_spend_it_without_429s(tasks: int) -> None:
    result = simulate(adaptive_tasks(tasks), FixedWindowServer(5000), seconds=119.9, latency=0.03)
    assert result.succeeded >= 0.95 * 2 * 5000  # two windows' budgets
    assert result.share_429 <= 0.01


@pytest.mark.parametrize(("tasks", "max_429"), [(1, 0.05), (4, 0.05), (8, 0.05), (16, 0.07)])
def test_tasks_sharing_a_bucket_without_headers_live_on_retry_after_alone(tasks: int, max_429: float) -> None:
    """16 tasks that never end, without headers, pay more 429s here than real ones do: 6.2% in this
    simulation against 4.4-4.6% measured (benchmark scenario D, 60-s jobs, 2026-11-26), where the
    issue's 5% is checked. This bound catches a pace that lives on 429s, not that margin."""
    seconds = 60
    result = simulate(
        adaptive_tasks(tasks), TokenBucketServer(5000), seconds=seconds, latency=0.03, headers=False
    )
    assert result.succeeded >= 0.85 * 5000 / 60 * seconds
    assert result.share_429 <= max_429


def test_time_held_by_a_retry_after_is_not_taken_for_a_crowded_account() -> None:
    """A task held a second by a ``Retry-After`` delivered nothing in that second because it was told
    to wait. Counting the hold as crowding dropped a task to a fifth of its pace on its next 429,
    and it finished its shard last, alone, at a crawl (benchmark scenario D, 16 tasks)."""
    ctl = AdaptiveRate(rng=random.Random(0))
    ctl.on_sent(0.0)
    for step in range(40):  # 20 requests/s answered for two seconds
        ctl.on_success(step * 0.05, step * 0.05 - 0.03)
    assert ctl.on_rate_limited(2.0, 1.97)  # the slow start ends: down to what it delivered
    pace = ctl.rate(2.0)
    assert 15 <= pace <= 25
    ctl.on_held(2.0, 3.05)  # the 429's Retry-After: 1 s, plus jitter
    assert ctl.on_rate_limited(3.1, 3.06)  # the first request after the hold meets an empty bucket too
    assert ctl.rate(3.1) == pytest.approx(pace * AdaptiveRate.DECREASE, rel=0.01)


def test_overlapping_holds_count_once() -> None:
    ctl = AdaptiveRate(rng=random.Random(0))
    ctl.on_sent(0.0)
    for step in range(20):
        ctl.on_success(step * 0.1, None)
    ctl.on_held(0.5, 1.5)
    ctl.on_held(1.0, 1.8)  # a 425's hold inside a 429's: one held stretch, 0.5 to 1.8
    assert ctl._delivered(2.0) == pytest.approx(20 / 0.7)
    assert ctl._delivered(2.0, free_only=False) == pytest.approx(20 / 2.0)


@pytest.mark.parametrize("seed", range(5))
def test_no_shard_of_a_job_without_headers_is_left_crawling(seed: int) -> None:
    """16 shards of one job, Retry-After only: once started, no task's pace falls below a quarter
    of its share (83/s / 16) for long enough to be the one the whole job waits for. Before holds
    were told apart from crowding, four of these five seeds had a task at about 1/s (0.9-1.2)."""
    bound = 5000 / 60
    controllers = adaptive_tasks(16, seed=seed)
    lowest = [math.inf] * 16
    for i, ctl in enumerate(controllers):
        succeed = ctl.on_success

        def on_success(now: float, sent_at: float | None, i: int = i, ctl=ctl, succeed=succeed) -> None:  # type: ignore[no-untyped-def]
            succeed(now, sent_at)
            if now > 3.0:
                lowest[i] = min(lowest[i], ctl.rate(now))

        ctl.on_success = on_success  # type: ignore[method-assign]
    rng = random.Random(seed)
    starts = sorted(rng.uniform(0, 0.8) for _ in range(16))
    result = simulate(
        controllers, TokenBucketServer(5000), seconds=400, latency=0.03, quota=int(bound * 20) // 16,
        starts=starts, headers=False, seed=seed, latency_jitter=0.03,
    )  # fmt: skip
    assert max(result.finished_at) < math.inf
    assert min(lowest) >= bound / 16 / 4


@pytest.mark.parametrize("seed", range(3))
def test_one_task_on_the_legacy_limit_finds_it_without_headers(seed: int) -> None:
    """Alone on the June 2026 limit (1,200/min, no headers): each 429 holds it a whole second
    (``Retry-After`` is whole seconds), in which the bucket refills; an extra random hold on top
    is budget lost (a quarter of the Retry-After cost about 2%: 95.9-96.6% here)."""
    seconds = 60
    result = simulate(
        adaptive_tasks(1, seed=seed),
        TokenBucketServer(1200),
        seconds=seconds,
        latency=0.1,
        headers=False,
        seed=seed,
    )
    assert result.succeeded >= 0.97 * 1200 / 60 * seconds
    assert result.share_429 <= 0.05


@pytest.mark.parametrize("tasks", [4, 8, 16])
def test_shards_of_one_job_started_apart_finish_it_near_the_bound_with_headers(tasks: int) -> None:
    """A job in equal shards whose tasks start seconds apart (processes on busy workers): when
    the first shards finish, the last ones must take over the freed budget at once, or the job
    loses its tail (the earlier probing grew 5% of the limit per second: 74-90% job-wide here)."""
    limit, work_s = 5000, 20
    bound = limit / 60
    quota = int(bound * work_s) // tasks
    rng = random.Random(tasks)
    starts = sorted(rng.uniform(0, 0.5 * tasks) for _ in range(tasks))
    result = simulate(
        adaptive_tasks(tasks, seed=tasks),
        TokenBucketServer(limit),
        seconds=300,
        latency=0.03,
        quota=quota,
        starts=starts,
    )
    job_ratio = quota * tasks / (max(result.finished_at) - starts[0]) / bound
    assert job_ratio >= 0.90
    assert result.share_429 <= 0.01


def test_a_task_alone_on_a_full_bucket_skips_most_of_the_slow_start_but_not_without_headers() -> None:
    """The headers say nobody else draws on the account: start at a quarter of the limit, not a
    sixteenth (the slow start cost a lone 20-s task 4-5% of its throughput). Without headers
    nothing says the account is idle: the careful start stays."""
    first_second = {
        headers: simulate(
            adaptive_tasks(1), TokenBucketServer(5000), seconds=1.0, latency=0.03, headers=headers
        )
        for headers in (True, False)
    }
    assert first_second[True].succeeded >= 35 and first_second[True].rate_limited == 0
    assert first_second[False].succeeded <= 20


def test_tasks_starting_together_on_a_full_bucket_step_back_before_it_empties() -> None:
    """Sixteen tasks whose first answers all show a full bucket all skip part of the slow start.
    The fall of the level is what tells them about each other: each scales its pace by how fast
    it falls, so together they return under the refill rate before the bucket is empty (before,
    they only slowed at half empty, by then 4-7 requests per job had been answered 429)."""
    tasks, limit = 16, 5000
    bound = limit / 60
    quota = int(bound * 20) // tasks
    for seed in range(3):
        rng = random.Random(seed)
        starts = sorted(rng.uniform(0, 0.05 * tasks) for _ in range(tasks))
        result = simulate(
            adaptive_tasks(tasks, seed=seed), TokenBucketServer(limit), seconds=300, latency=0.03,
            latency_jitter=0.03, quota=quota, starts=starts, seed=seed,
        )  # fmt: skip
        assert result.rate_limited == 0, seed
        assert quota * tasks / (max(result.finished_at) - starts[0]) >= 0.95 * bound


def test_leaving_the_slow_start_on_a_falling_bucket_scales_by_the_fall() -> None:
    ctl = AdaptiveRate(rng=random.Random(1))
    ctl.on_sent(0.0)
    ctl.on_headers(RateLimitHeaders(5000, 83, 0.0), 0.00)
    # Refilling: more budget than a moment ago, long before the announced reset.
    ctl.on_headers(RateLimitHeaders(5000, 80, 1.0), 0.01)
    ctl.on_headers(RateLimitHeaders(5000, 83, 0.0), 0.02)
    assert ctl.slow_start
    before = ctl.rate(0.02)
    ctl.on_headers(RateLimitHeaders(5000, 58, 1.0), 0.12)  # 25 fewer in 0.1 s: drawn at 4x the refill
    assert not ctl.slow_start
    assert ctl.rate(0.12) == pytest.approx(
        before * AdaptiveRate.TARGET_DRAW / (1 + 250 / (5000 / 60)), rel=0.01
    )


def test_a_wild_fall_in_the_headers_cannot_push_the_pace_below_the_floor() -> None:
    """A server that announces an enormous budget, then a far smaller one (still above the low
    water, so nothing else slows the task): the exit from the slow start scales the pace by that
    absurd fall, but never below the floor (one request every ~12 s)."""
    ctl = AdaptiveRate(rng=random.Random(1))
    ctl.on_sent(0.0)
    ctl.on_headers(RateLimitHeaders(5000, 1e300, 0.0), 0.00)
    ctl.on_headers(RateLimitHeaders(5000, 1e300 - 1e290, 1.0), 0.01)
    ctl.on_headers(RateLimitHeaders(5000, 1e300, 0.0), 0.02)  # refilling, ample, still starting
    assert ctl.slow_start
    ctl.on_headers(RateLimitHeaders(5000, 0.6e300, 1.0), 0.03)
    assert not ctl.slow_start
    assert ctl.aimd == pytest.approx(ctl.floor)
    for at in (0.04, 0.05, 0.06):  # and whatever follows
        ctl.on_headers(RateLimitHeaders(5000, 1e300 if at == 0.05 else 0, 1.0), at)
        assert math.isfinite(ctl.aimd) and ctl.aimd >= ctl.floor
