"""Progress lines report a rate and an ETA only once one is known (fake clock)."""

from __future__ import annotations

from typing import Any

from airflow_provider_pioneer.batching.progress import Progress


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)


def test_no_rate_before_a_batch_is_answered_nor_from_a_few_milliseconds() -> None:
    now = [50.0]
    log = _Log()
    p = Progress(log, total=76, skipped=0, stats=lambda: {"attempts": 2}, interval=5.0, clock=lambda: now[0])
    for t in (55.0, 60.0, 65.0):  # waiting for the first answer: no "0.0 items/s, ETA ?"
        now[0] = t
        p.maybe_log()
    now[0] = 65.016
    p.advance(64)  # the first batch, 16 ms after the last tick but 15 s after the start
    now[0] = 65.02
    assert log.lines == [
        "Pioneer inference: 0/76 items (0.0%), no batch answered yet; 2 requests, 0 retries, 0 x 429"
    ] * 3 + ["Pioneer inference: 64/76 items (84.2%), 4.3 items/s, ETA 2s; 2 requests, 0 retries, 0 x 429"]


def test_a_first_batch_answered_at_once_gives_no_rate_until_a_second_has_passed() -> None:
    now = [10.0]
    log = _Log()
    p = Progress(log, total=76, skipped=0, stats=dict, interval=5.0, clock=lambda: now[0])
    now[0] = 10.016
    p.advance(64)  # was "3946.2 items/s, ETA 0s"
    now[0] = 16.0  # the next line is due 5 s after the first
    p.advance(12)
    assert log.lines == [
        "Pioneer inference: 64/76 items (84.2%), rate not known yet; 0 requests, 0 retries, 0 x 429",
        "Pioneer inference: 76/76 items (100.0%), 12.7 items/s, ETA 0s; 0 requests, 0 retries, 0 x 429",
    ]


def test_checkpointed_items_are_not_a_rate() -> None:
    now = [0.0]
    log = _Log()
    p = Progress(log, total=1000, skipped=900, stats=dict, interval=5.0, clock=lambda: now[0])
    now[0] = 5.0
    p.maybe_log()  # 900 done, all from the checkpoint: nothing sent in this attempt yet
    assert log.lines == [
        "Pioneer inference: 900/1000 items (90.0%), no batch answered yet; 0 requests, 0 retries, 0 x 429"
    ]


def test_the_eta_counts_a_retry_after_hold_and_the_line_says_it_holds() -> None:
    """Issue 17: a shared Retry-After gate holding the task for 38 s is in the ETA (it was left out)."""
    now = [0.0]
    log = _Log()
    held = [38.0]
    p = Progress(
        log, total=200, skipped=0, stats=dict, interval=5.0, clock=lambda: now[0],
        pace=lambda: "pace 1,200/min; held 38 s by the server's Retry-After", hold=lambda: held[0],
    )  # fmt: skip
    now[0] = 10.0
    p.advance(100)  # 10 items/s: 10 s left, plus the 38 s hold
    assert log.lines[-1].endswith(
        "ETA 48s; 0 requests, 0 retries, 0 x 429; pace 1,200/min; held 38 s by the server's Retry-After"
    )
