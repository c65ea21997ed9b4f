"""The emulator's four rate-limiter models on a fake clock: counts, Retry-After, headers (limiters.py)."""

from __future__ import annotations

import itertools
import math
import random
import threading
import time

import pytest

from airflow_provider_pioneer.testing.config import EmulatorConfig
from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.limiters import MODELS, WindowLimiter, check_model, make_limiter
from airflow_provider_pioneer.testing.limits import TokenBucket
from airflow_provider_pioneer.testing.state import EmulatorState

WINDOW_MODELS = ("fixed_window", "moving_window", "sliding_window")


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def hammer(model: str, per_minute: float, window_s: float, seconds: float, step: float = 0.01) -> list[float]:
    """Times of the allowed requests when one is sent every ``step`` seconds."""
    clock = Clock()
    limiter = make_limiter(model, per_minute, window_s=window_s, clock=clock)
    allowed = []
    for i in range(round(seconds / step)):
        clock.now = i * step
        if limiter.hit() == 0.0:
            allowed.append(clock.now)
    return allowed


def test_models_and_unknown_model() -> None:
    assert MODELS == ("token_bucket", "fixed_window", "moving_window", "sliding_window")
    assert check_model("moving_window") == "moving_window"
    with pytest.raises(ValueError, match="token_bucket, fixed_window, moving_window, sliding_window"):
        make_limiter("leaky_bucket", 600)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model": "fixed_window", "per_minute": 0}, "per_minute must be above 0"),
        ({"model": "fixed_window", "per_minute": 60, "window_s": 1.5}, "whole seconds"),
        ({"model": "moving_window", "per_minute": 60, "window_s": 0}, "whole seconds"),
        ({"model": "sliding_window", "per_minute": 60, "burst": 5}, "token_bucket model only"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_limiter(**kwargs)  # type: ignore[arg-type]


def test_fixed_window_allows_the_amount_per_window_anchored_at_its_first_request() -> None:
    # 600 rpm over 5 s windows: 50 per window; the window opens at the first request (t = 0).
    allowed = hammer("fixed_window", 600, 5, seconds=15)
    per_window = [sum(1 for t in allowed if k * 5 <= t < (k + 1) * 5) for k in range(3)]
    assert per_window == [50, 50, 50]
    # ...all at the start of each window: the burst at a boundary a fixed window is known for.
    assert [t for t in allowed if 5 <= t < 10] == pytest.approx([5 + i * 0.01 for i in range(50)])


def test_moving_window_never_allows_more_than_the_amount_in_any_window() -> None:
    allowed = hammer("moving_window", 600, 5, seconds=15)
    assert len(allowed) == 150
    # every run of 51 allowed requests spans more than a window
    assert min(allowed[i + 50] - allowed[i] for i in range(len(allowed) - 50)) > 5 - 1e-9
    # the log frees slot by slot: the 51st goes out as soon as the first leaves the window
    assert allowed[50] == pytest.approx(5.0, abs=0.011)  # 0.0 + 5 s (a tie at 5.0 counts as gone)


def test_sliding_window_counter_weights_the_previous_window() -> None:
    # A full window at once, then the counter lets requests through as the previous window's
    # weight falls: about one per window / amount seconds, never the boundary burst of a fixed window.
    allowed = hammer("sliding_window", 600, 5, seconds=15)
    first, second, third = (sum(1 for t in allowed if k * 5 <= t < (k + 1) * 5) for k in range(3))
    assert first == 50
    assert 45 <= second <= 50 and 45 <= third <= 50
    second_window = [t for t in allowed if 5 <= t < 10]
    gaps = [b - a for a, b in itertools.pairwise(second_window)]
    assert max(gaps) < 0.2  # spread out (5 s / 50 = 0.1 s apart), not a burst at t = 5
    assert second_window[0] > 5.0


def test_token_bucket_allows_its_burst_then_the_rate() -> None:
    allowed = hammer("token_bucket", 600, 60, seconds=10)
    assert len(allowed) == pytest.approx(10 + 100, abs=1)  # a full bucket of 10, then 10 per second
    assert allowed[:10] == pytest.approx([i * 0.01 for i in range(10)])


@pytest.mark.parametrize("model", MODELS)
def test_the_wait_of_a_refused_request_is_exact(model: str) -> None:
    """Sent just before the wait is over: refused; sent at its end: allowed (random traffic)."""
    rng = random.Random(17)
    clock = Clock(1000.0)
    limiter = make_limiter(model, 300, window_s=6, clock=clock)
    checked = 0
    for _ in range(600):
        clock.now += rng.expovariate(1 / 0.03)
        wait = limiter.hit()
        if wait == 0.0:
            continue
        start = clock.now
        if wait > 0.02:
            clock.now = start + wait - 0.01
            assert limiter.hit() > 0.0, (model, start, wait)
        clock.now = start + wait
        assert limiter.hit() == 0.0, (model, start, wait)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("model", WINDOW_MODELS)
def test_headers_of_a_window_model(model: str) -> None:
    clock = Clock()
    limiter = make_limiter(model, 600, window_s=10, clock=clock)  # 100 per 10 s
    for _ in range(40):
        assert limiter.hit() == 0.0
        clock.now += 0.05  # 40 requests over 0..1.95 s
    clock.now = 2.5
    assert limiter.headers() == {
        "X-RateLimit-Limit": "100",
        "X-RateLimit-Remaining": "60",
        # fixed: the window (opened at 0) ends at 10; moving: the oldest request (0) leaves at 10;
        # sliding: the current window (aligned on 0) ends at 10 and there is no previous one.
        "X-RateLimit-Reset": "8",
    }


def test_reset_of_the_moving_window_is_the_next_free_slot() -> None:
    clock = Clock()
    limiter = make_limiter("moving_window", 60, window_s=10, clock=clock)  # 10 per 10 s
    for i in range(10):
        clock.now = i * 0.7  # the last at 6.3 s
        assert limiter.hit() == 0.0
    clock.now = 7.0
    wait = limiter.hit()
    assert wait == pytest.approx(3.0, abs=1e-5)  # the first request (t = 0) leaves the window at 10 s
    assert limiter.headers()["X-RateLimit-Reset"] == "3"
    assert limiter.headers()["X-RateLimit-Remaining"] == "0"
    clock.now = 10.5  # one slot free; the next one frees when the request of 0.7 s leaves, at 10.7 s
    assert limiter.headers() == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "1",
        "X-RateLimit-Reset": "1",
    }


def test_reset_of_the_fixed_window_is_the_window_end() -> None:
    clock = Clock(50.0)
    limiter = make_limiter("fixed_window", 60, window_s=30, clock=clock)  # 30 per 30 s, from 50 s
    for _ in range(30):
        assert limiter.hit() == 0.0
    clock.now = 61.2
    assert limiter.hit() == pytest.approx(18.8, abs=1e-5)
    assert limiter.headers() == {
        "X-RateLimit-Limit": "30",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "19",
    }
    clock.now = 80.0
    assert limiter.hit() == 0.0  # a new window, opened now
    assert limiter.headers()["X-RateLimit-Reset"] == "30"
    assert limiter.headers()["X-RateLimit-Remaining"] == "29"


def test_reset_of_the_sliding_window_counter_is_when_its_weighted_count_drops() -> None:
    clock = Clock()
    limiter = make_limiter("sliding_window", 60, window_s=10, clock=clock)  # 10 per 10 s
    for _ in range(10):
        assert limiter.hit() == 0.0
    clock.now = 12.3  # previous window: 10 requests, weight 0.77 -> 7.7 counted, 2 free
    assert limiter.headers() == {
        "X-RateLimit-Limit": "10",
        "X-RateLimit-Remaining": "3",  # 10 - floor(7.7): what the library reports
        "X-RateLimit-Reset": "1",  # the weighted count drops by one every 1 s (10 s / 10), next at 13 s
    }
    assert [limiter.hit() for _ in range(3)] == [0.0, 0.0, 0.0]  # 7.7 + 2 < 10
    # 7.7 + 3 = 10.7: full until the previous window's weight falls below 0.7, at 13 s
    assert limiter.hit() == pytest.approx(0.7, abs=1e-5)
    assert limiter.headers()["X-RateLimit-Remaining"] == "0"
    clock.now = 21.0  # the window of those 3 is the previous one now, weight 0.9: 2.7 counted
    assert [limiter.hit() for _ in range(7)] == [0.0] * 7
    # 2.7 + 7 = 9.7 -> floor 9: one more; then full until 3 x weight + 8 < 10, weight 2/3, at 23.33 s
    assert limiter.hit() == 0.0
    assert limiter.hit() == pytest.approx(10 - 20 / 3 - 1, abs=1e-5)


@pytest.mark.parametrize("model", MODELS)
def test_limit_with_and_without_the_window_parameter(model: str) -> None:
    bare = make_limiter(model, 1200, window_s=5, clock=Clock())
    with_w = make_limiter(model, 1200, window_s=5, clock=Clock(), window_in_limit=True)
    bare.hit()
    with_w.hit()
    # the token bucket's limit is per minute; a window model's per window
    expected = "1200" if model == "token_bucket" else "100"
    window = "60" if model == "token_bucket" else "5"
    assert bare.headers()["X-RateLimit-Limit"] == expected
    assert with_w.headers()["X-RateLimit-Limit"] == f"{expected};w={window}"
    assert bare.model == with_w.model == model


def test_per_second_window_without_w_reads_like_such_servers() -> None:
    limiter = make_limiter("fixed_window", 1200, window_s=1, clock=Clock())  # "20 per second"
    assert limiter.hit() == 0.0
    assert limiter.headers() == {
        "X-RateLimit-Limit": "20",
        "X-RateLimit-Remaining": "19",
        "X-RateLimit-Reset": "1",
    }


def test_token_bucket_headers_are_those_of_earlier_releases() -> None:
    """The emulator's default model: same Limit/Remaining/Reset as before the models came."""
    clock = Clock(5.0)
    limiter = make_limiter("token_bucket", 600, clock=clock)  # burst: one second's worth, 10
    assert isinstance(limiter, TokenBucket)
    seen = []
    for _ in range(11):
        seen.append((limiter.hit(), limiter.headers()))
    assert [w for w, _ in seen] == [0.0] * 10 + [pytest.approx(0.1)]
    assert [h["X-RateLimit-Remaining"] for _, h in seen] == [str(n) for n in range(9, -1, -1)] + ["0"]
    assert {h["X-RateLimit-Limit"] for _, h in seen} == {"600"}
    assert {h["X-RateLimit-Reset"] for _, h in seen} == {"1"}  # 10 tokens at 10 a second
    clock.now += 0.35
    assert limiter.headers() == {
        "X-RateLimit-Limit": "600",
        "X-RateLimit-Remaining": "3",
        "X-RateLimit-Reset": "1",
    }


def test_a_fake_clock_far_from_real_time_and_no_expiry_thread() -> None:
    """limits' own expiry thread runs on the real clock: it must not run, or drop live entries."""
    threads = threading.active_count()
    clocks = [Clock(0.0), Clock(1e11)]
    limiters = [make_limiter("moving_window", 60, window_s=10, clock=c) for c in clocks]
    for _ in range(10):
        for limiter in limiters:
            assert limiter.hit() == 0.0
    time.sleep(0.05)  # the library's timer fires after 10 ms
    assert threading.active_count() == threads
    for limiter in limiters:  # still full: nothing was dropped
        assert limiter.hit() > 9.9
    assert all(isinstance(limiter, WindowLimiter) for limiter in limiters)


def test_other_users_of_limits_keep_the_real_clock() -> None:
    from limits import RateLimitItemPerMinute
    from limits.storage import MemoryStorage
    from limits.strategies import FixedWindowRateLimiter

    make_limiter("fixed_window", 60, clock=Clock(3.0)).hit()  # installs the clock stand-in
    storage = MemoryStorage()
    strategy = FixedWindowRateLimiter(storage)
    item = RateLimitItemPerMinute(2)
    assert strategy.hit(item, "x")
    reset = strategy.get_window_stats(item, "x").reset_time
    assert math.isclose(reset, time.time() + 60, abs_tol=5)


# -- the emulator's settings -------------------------------------------------------------------------
def test_emulator_config_refuses_what_a_model_cannot_honour() -> None:
    assert (EmulatorConfig().rate_limit_model, EmulatorConfig().rate_limit_window_seconds) == (
        "token_bucket",
        60.0,
    )
    with pytest.raises(
        ValueError, match="use one of token_bucket, fixed_window, moving_window, sliding_window"
    ):
        EmulatorConfig(rate_limit_model="leaky_bucket")
    with pytest.raises(ValueError, match="burst applies to the token_bucket model only"):
        EmulatorConfig(rate_limit_model="fixed_window", rate_limit_burst=5)
    with pytest.raises(ValueError, match="whole seconds"):
        EmulatorConfig(rate_limit_model="sliding_window", rate_limit_window_seconds=2.5)
    with pytest.raises(ValueError, match="per_minute must be above 0"):
        EmulatorConfig(rate_limit_per_minute=0)


def test_the_cli_reads_back_every_limiter_setting() -> None:
    from airflow_provider_pioneer.testing.__main__ import _parser

    config = EmulatorConfig(
        rate_limit_per_minute=600, rate_limit_model="moving_window", rate_limit_window_seconds=5,
        rate_limit_window_in_limit=True,
    )  # fmt: skip
    args = _parser().parse_args(config.cli_args())
    assert (args.rate_limit_per_minute, args.rate_limit_model) == (600.0, "moving_window")
    assert (args.rate_limit_window_seconds, args.rate_limit_window_in_limit) == (5.0, True)
    default = _parser().parse_args(EmulatorConfig().cli_args())
    assert (default.rate_limit_model, default.rate_limit_window_in_limit) == ("token_bucket", False)


def test_emulator_state_counts_with_the_model_and_sends_its_headers() -> None:
    state = EmulatorState(
        EmulatorConfig(
            rate_limit_per_minute=60, rate_limit_model="fixed_window", rate_limit_window_seconds=10,
            rate_limit_window_in_limit=True,
        )
    )  # fmt: skip
    key = state.authenticate(state.bootstrap_key, "inference")
    assert state.inference_headers(key) == {
        "X-RateLimit-Limit": "10;w=10",
        "X-RateLimit-Remaining": "9",
        "X-RateLimit-Reset": "10",
    }
    for _ in range(9):
        state.authenticate(state.bootstrap_key, "inference")
    with pytest.raises(AuthError) as refused:
        state.authenticate(state.bootstrap_key, "inference")
    assert refused.value.status == 429
    headers = refused.value.headers
    assert headers["X-RateLimit-Remaining"] == "0" and headers["X-RateLimit-Limit"] == "10;w=10"
    assert headers["Retry-After"] == headers["X-RateLimit-Reset"] == "10"  # the window ends in ~10 s
    # At run time: another model, a fresh limit; a bad setting is refused and changes nothing.
    state.set_rate_limit(60, model="sliding_window", window_seconds=30, window_in_limit=False)
    key = state.authenticate(state.bootstrap_key, "inference")
    assert state.inference_headers(key)["X-RateLimit-Limit"] == "30"
    with pytest.raises(ValueError, match="use one of"):
        state.set_rate_limit(60, model="leaky_bucket")
    with pytest.raises(ValueError, match="token_bucket model only"):
        state.set_rate_limit(60, burst=3)  # the model in force is sliding_window
    assert state.inference_headers(key)["X-RateLimit-Remaining"] == "29"  # the same limiter still
    state.set_rate_limit(60, burst=3, model="token_bucket")
    key = state.authenticate(state.bootstrap_key, "inference")
    assert state.inference_headers(key) == {
        "X-RateLimit-Limit": "60",  # window_in_limit=False of the earlier call stays in force
        "X-RateLimit-Remaining": "2",
        "X-RateLimit-Reset": "1",
    }
