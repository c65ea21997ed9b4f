"""State mapping that survives doc drift, and the dataset row checks (pure logic, no network)."""

from __future__ import annotations

import pytest

from airflow_provider_pioneer.lifecycle.datasets import check_rows
from airflow_provider_pioneer.lifecycle.status import Phase, is_callable, needs_deploy, phase_of

DOCUMENTED = {
    "requested": Phase.PENDING,
    "paused": Phase.PENDING,
    "running": Phase.RUNNING,
    "complete": Phase.SUCCEEDED,
    "normalizing": Phase.SUCCEEDED,
    "deployed": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "errored": Phase.FAILED,
    "stopped": Phase.FAILED,
    "cancelled": Phase.FAILED,
    "terminated": Phase.FAILED,
}


@pytest.mark.parametrize(("status", "phase"), sorted(DOCUMENTED.items()))
def test_every_documented_state_has_a_phase(status: str, phase: Phase) -> None:
    assert phase_of({"status": status}) is phase
    assert phase_of({"status": status.upper()}) is phase  # case does not matter


def test_an_undocumented_state_is_unknown_so_the_caller_keeps_polling() -> None:
    assert phase_of({"status": "compiling"}) is Phase.UNKNOWN
    assert phase_of({}) is Phase.UNKNOWN
    assert not Phase.UNKNOWN.terminal


def test_normalized_status_and_is_terminal_status_win_over_the_raw_state() -> None:
    assert phase_of({"status": "compiling", "normalized_status": "running"}) is Phase.RUNNING
    assert phase_of({"status": "compiling", "normalized_status": "completed"}) is Phase.SUCCEEDED
    assert (
        phase_of({"status": "weird_end", "is_terminal_status": True, "error_message": "OOM"}) is Phase.FAILED
    )
    assert phase_of({"status": "complete_ok", "is_terminal_status": True}) is Phase.SUCCEEDED
    # The server says polling goes on: a "complete" that is not the end yet is still running.
    assert phase_of({"status": "complete", "is_terminal_status": False}) is Phase.RUNNING


def test_callable_for_inference_is_its_own_check() -> None:
    assert is_callable({"status": "deployed"})
    assert not is_callable({"status": "complete"})
    assert is_callable({"status": "complete", "provider_deployments": {"modal": {"status": "active"}}})
    assert needs_deploy({"status": "complete", "is_deployable": True})
    assert not needs_deploy({"status": "complete", "is_deployable": False})
    assert not needs_deploy({"status": "deployed", "is_deployable": True})


def test_dataset_rows_are_checked_and_bad_lines_named() -> None:
    lines = [
        '{"text": "Ada Lovelace in London", "entities": [["Ada Lovelace", "person"]]}',
        "",
        '{"text": "Grace Hopper", "entities": [["COBOL", "language"]]}',
        "not json",
        '{"input": "x", "output": {"entities": {}}}',
        '{"text": "negative example", "entities": []}',
    ]
    check = check_rows(lines)
    assert check.rows == 5 and not check.ok and check.labels == ["person"]
    assert [n for n, _ in check.problems] == [3, 4, 5]
    message = check.message("data.jsonl")
    assert "3 of 5 rows are not valid; nothing was uploaded" in message
    assert "line 3: entity 0: span 'COBOL' is not in the text" in message
    assert "line 5: GLiNER2" in message
    assert check_rows(['{"text": "a", "label": "x"}'], "classification").ok
    assert not check_rows([]).ok


def test_the_submit_window_holds_the_submit_that_would_pass_the_limit() -> None:
    from airflow_provider_pioneer.operators.training import SubmitWindow

    window = SubmitWindow(limit=2, window=0.2)
    assert window.wait() == 0.0 and window.wait() == 0.0
    assert window.wait() > 0.0  # the third in the same 0.2 s waits for the first to leave the window
