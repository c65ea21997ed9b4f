"""P = 4 shard processes on one account, on each limiter model of the emulator (issue 17's acceptance).

Four real OS processes (``shard_child.py``: one client and batch runner each, default pacing, the
operator's concurrency) share one account of one emulator, whose limiter is each of its four
models in turn, with the ``X-RateLimit-*`` headers sent and hidden. Loose bounds only, no timing:
every shard finishes with a result for every text, and 429s stay under 5% of the requests.
The achieved share of the account's bound is reported in the failure message, not asserted.
"""

from __future__ import annotations

import json
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_pioneer.testing import PioneerEmulator
from airflow_provider_pioneer.testing.limiters import MODELS

#: Pure client code, the same on every Airflow: `make test` runs it, the version matrix does not.
pytestmark = pytest.mark.pacing_models

CHILD = Path(__file__).resolve().parent / "shard_child.py"
P = 4
# 40 requests/s for the whole account. A job must be long enough for its 429s to be judged: each
# shard learns the limit from a 429 or two when the headers are hidden, and 5% of 240 requests
# leaves three per shard; at 1,200 rpm the same job would take 12 s per case.
LIMIT_RPM = 2400.0
WINDOW_S = 5  # the window models': 200 requests per 5 s window (whole-second resets are coarse on 2 s)
#: Requests of the whole job: 10 s at the bound, two windows (the first seconds, when the shards
#: do not know yet how many they are, cost a few 429s: a job this long judges the rest too).
JOB_REQUESTS = 400
#: A case still running after this is stopped and fails (at 10 s of work: under 20% of the bound).
CASE_TIMEOUT_S = 50.0
BATCH_SIZE = 2
MAX_CONCURRENCY = 8  # the operator's default


class Shards:
    """Four shard processes, started once (each imports the provider once) and reused by every case.

    A case that does not end within :data:`CASE_TIMEOUT_S` is stopped (SIGUSR1, as the operator's
    on_kill stops a run) and fails; the processes stay for the next case.
    """

    def __init__(self, emulator: PioneerEmulator) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self._emulator = emulator  # its key stays out of every argument a failure report shows

    def start(self) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(CHILD)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                bufsize=1,
            )
            for _ in range(P)
        ]
        for proc in self.procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "READY", (
                f"a shard process did not start (exit {proc.poll()})"
            )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.stdin:
                proc.stdin.close()  # the end of its jobs: it exits
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self.procs = []

    def run(self, job: dict[str, Any]) -> tuple[list[dict[str, Any]], float, bool]:
        """Send ``job`` to all four at once: their answers, the seconds until the last one, and
        whether the timeout stopped some."""
        line = json.dumps({**job, "url": self._emulator.url, "key": self._emulator.api_key}) + "\n"
        started = time.monotonic()
        for proc in self.procs:  # all four start within a millisecond, like shards of one mapped task
            assert proc.stdin is not None
            proc.stdin.write(line)
        answers: dict[int, dict[str, Any]] = {}
        stopped = False
        with selectors.DefaultSelector() as sel:
            for i, proc in enumerate(self.procs):
                assert proc.stdout is not None
                sel.register(proc.stdout, selectors.EVENT_READ, i)
            while len(answers) < P:
                if not stopped and time.monotonic() > started + CASE_TIMEOUT_S:
                    stopped = True
                    for i, proc in enumerate(self.procs):
                        if i not in answers:
                            proc.send_signal(signal.SIGUSR1)
                for key, _ in sel.select(timeout=1.0):
                    answer = key.fileobj.readline()  # type: ignore[union-attr]
                    assert answer, f"a shard process died (exit {self.procs[key.data].poll()})"
                    assert answer.startswith("RESULT "), answer
                    answers[key.data] = json.loads(answer.removeprefix("RESULT "))
                    sel.unregister(key.fileobj)
        return [answers[i] for i in range(P)], time.monotonic() - started, stopped


@pytest.fixture(scope="module")
def shards(emulator: PioneerEmulator) -> Iterator[Shards]:
    pool = Shards(emulator)
    pool.start()
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture(scope="module")
def emulator() -> Iterator[PioneerEmulator]:
    with PioneerEmulator(latency_ms=20) as emu:  # the current API: one limit per account
        yield emu


@pytest.mark.parametrize("headers", [True, False], ids=["headers", "retry-after-only"])
@pytest.mark.parametrize("model", MODELS)
def test_four_shards_share_one_account_on_every_limiter_model(
    model: str, headers: bool, shards: Shards, emulator: PioneerEmulator
) -> None:
    emulator.set_rate_limit(LIMIT_RPM, model=model, window_seconds=WINDOW_S)  # a fresh limiter
    emulator.set_rate_limit_headers(headers)
    emulator.reset_counters()
    job = {
        "batch_size": BATCH_SIZE,
        "max_concurrency": MAX_CONCURRENCY,
        "texts": JOB_REQUESTS * BATCH_SIZE // P,
    }
    results, elapsed, stopped = shards.run(job)
    counters = emulator.counters()
    sent = counters["requests"].get("POST /inference", 0)
    limited = counters["rate_limited"]
    admitted = sent - limited
    share = limited / sent if sent else 0.0
    of_bound = admitted / (elapsed * LIMIT_RPM / 60.0)
    summary = (
        f"{model}, headers={headers}: {sent} requests, {limited} x 429 ({share:.1%}), "
        f"{of_bound:.0%} of the bound over {elapsed:.1f} s{' (stopped: too slow)' if stopped else ''}; shards: "
        + "; ".join(f"{r['results']} results, {r['rate_limited']} x 429, {r['pacer']}" for r in results)
    )
    print(summary, counters["statuses"])
    assert not stopped, f"the job did not end within {CASE_TIMEOUT_S} s: {summary}"
    assert all(r["ok"] for r in results), (summary, [r["error"] for r in results])
    assert admitted >= JOB_REQUESTS, summary
    assert share < 0.05, summary
