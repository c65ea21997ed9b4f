"""Unit tests of the operator's construction, its extra link and its progress lines (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_pioneer.batching.progress import Progress
from airflow_provider_pioneer.links import PioneerModelLink
from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be between 1 and 1000"),
        ({"batch_size": 1001}, "batch_size must be between 1 and 1000"),
        ({"max_concurrency": 0}, "max_concurrency must be at least 1"),
        ({"requests_per_minute": 0}, "requests_per_minute must be positive"),
        ({"max_failed_ratio": 1.5}, "max_failed_ratio must be within 0..1"),
        ({"entities": ["a"], "schema": {"entities": ["a"]}}, "Give entities or schema, not both"),
    ],
)
def test_bad_settings_fail_at_parse_time(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PioneerInferenceOperator(task_id="t", model_id="m", texts=["x"], **kwargs)


def test_public_parameters_and_template_fields() -> None:
    op = PioneerInferenceOperator(
        task_id="t", model_id="m", texts=["x"], entities=["person"], output_path="/o.jsonl", project_id="p"
    )
    assert set(op.template_fields) >= {"model_id", "texts", "input_path", "entities", "schema", "output_path"}
    assert (op.batch_size, op.max_concurrency, op.requests_per_minute, op.max_failed_ratio) == (
        64,
        8,
        None,  # adaptive: the account's budget, no tuning
        0,
    )
    assert op.pioneer_conn_id == "pioneer_default"
    assert [link.name for link in op.operator_extra_links] == ["Pioneer models"]


def test_model_link_points_at_the_documented_models_page() -> None:
    # Pioneer documents no per-model console page (only /settings/api-keys and /credits), so the
    # link is the docs' Models page, whatever the model: never a guessed console path.
    for model_id in ("job_abc 123", "fastino/gliner2-base-v1"):
        op = PioneerInferenceOperator(task_id="t", model_id=model_id, texts=["x"], entities=["p"])
        assert PioneerModelLink().get_link(op, ti_key=None) == "https://docs.pioneer.ai/concepts/models"  # type: ignore[arg-type]


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)


def test_first_progress_line_comes_with_the_first_batch_then_one_per_interval() -> None:
    now = [100.0]
    log = _Log()
    stats = {"attempts": 12, "retries": 3, "rate_limited": 2}
    pace = ["pace 1,200/min"]
    p = Progress(
        log,
        total=1000,
        skipped=100,
        stats=lambda: stats,
        interval=10.0,
        clock=lambda: now[0],
        pace=lambda: pace[0],
    )
    now[0] = 102.0
    p.advance(100)  # the first batch: a line at once, not after a whole interval
    assert log.lines == [
        "Pioneer inference: 200/1000 items (20.0%), 50.0 items/s, ETA 16s; "
        "12 requests, 3 retries, 2 x 429; pace 1,200/min"
    ]
    now[0] = 105.0
    p.advance(100)
    p.maybe_log()
    assert len(log.lines) == 1  # the next one is due 10 s after the first
    now[0] = 112.0
    pace[0] = "pace 1,080/min"  # slowed by a 429
    p.maybe_log()
    p.maybe_log()
    assert log.lines[1:] == [
        "Pioneer inference: 300/1000 items (30.0%), 16.7 items/s, ETA 42s; "
        "12 requests, 3 retries, 2 x 429; pace 1,080/min"
    ]
    assert all(len(line) <= 120 for line in log.lines)  # readable without scrolling sideways
