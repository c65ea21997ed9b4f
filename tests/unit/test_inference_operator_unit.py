"""Unit tests of the operator's construction, its extra link and its progress lines (no network)."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_pioneer.batching.progress import Progress
from airflow_provider_pioneer.links import PioneerModelLink, model_url
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
    assert [link.name for link in op.operator_extra_links] == ["Pioneer model"]


def test_model_link_points_at_the_console_page() -> None:
    op = PioneerInferenceOperator(task_id="t", model_id="job_abc 123", texts=["x"], entities=["p"])
    assert PioneerModelLink().get_link(op, ti_key=None) == "https://agent.pioneer.ai/models/job_abc%20123"  # type: ignore[arg-type]
    assert model_url("fastino/gliner2-base-v1") == "https://agent.pioneer.ai/models/fastino/gliner2-base-v1"


class _Log:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg: str, *args: Any) -> None:
        self.lines.append(msg % args)


def test_progress_lines_come_at_the_cadence_with_rate_and_eta() -> None:
    now = [100.0]
    log = _Log()
    stats = {"attempts": 12, "retries": 3, "rate_limited": 2}
    p = Progress(log, total=1000, skipped=100, stats=lambda: stats, interval=10.0, clock=lambda: now[0])
    p.advance(200)
    now[0] = 105.0
    p.maybe_log()
    assert log.lines == []  # not yet due
    now[0] = 110.0
    p.maybe_log()
    p.maybe_log()
    assert log.lines == [
        "Pioneer inference: 300/1000 items (30.0%), 20.0 items/s, ETA 35s, 12 requests, 3 retries, 2 x 429"
    ]
