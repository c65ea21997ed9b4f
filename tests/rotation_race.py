"""Run a rotation DAG in this process, each rotation task starting at a moment the test picks.

    python -m tests.rotation_race DAG_ID CONTROL_DIR ROLE LATENCY_S

When a task enters ``PioneerKeyRotationOperator.execute``, this process writes
``CONTROL_DIR/ready-ROLE-TASK_ID`` and waits for ``CONTROL_DIR/go-ROLE-TASK_ID``, which holds a
wall-clock time; the rotation starts then. The test gives two such processes start times a chosen
gap apart, so two rotations of one Variable interleave for real (separate processes, one metadata
DB, one emulator). Every Pioneer call first waits ``LATENCY_S`` (network latency: it widens the
windows in which the two runs interleave). Each task's return value, or its error, is written to
``CONTROL_DIR/result-ROLE-TASK_ID`` as JSON. The whole DAG is one dag.test(), so a round costs
a task, not a DAG run. Run with the test suite's environment (AIRFLOW_HOME, the connection).
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator

_WAIT_LIMIT = 180.0


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` so that a reader sees either no file or all of it (the test and this process
    poll each other's files)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text)
    partial.replace(path)


def _wait_for(path: Path) -> str:
    deadline = time.monotonic() + _WAIT_LIMIT
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"nobody wrote {path}")
        time.sleep(0.002)
    return path.read_text()


def arm(control: Path, role: str, latency: float) -> None:
    """Gate every rotation on the test's go file, record its outcome, slow every Pioneer call."""
    execute = PioneerKeyRotationOperator.execute

    @functools.wraps(execute)
    def gated(self: Any, context: Any) -> Any:
        tag = f"{role}-{self.task_id}"
        try:
            write_atomically(control / f"ready-{tag}", "")
            start = float(_wait_for(control / f"go-{tag}"))
            time.sleep(max(0.0, start - time.time()))
            value = execute(self, context)
        except BaseException as exc:
            write_atomically(control / f"result-{tag}", json.dumps({"ok": False, "error": str(exc)}))
            raise
        write_atomically(control / f"result-{tag}", json.dumps({"ok": True, "value": value}))
        return value

    call = PioneerClient.request

    @functools.wraps(call)
    def slow(self: Any, *args: Any, **kwargs: Any) -> Any:
        time.sleep(latency)
        return call(self, *args, **kwargs)

    PioneerKeyRotationOperator.execute = gated  # type: ignore[method-assign]
    PioneerClient.request = slow  # type: ignore[method-assign]


def main(argv: list[str]) -> int:
    dag_id, control_dir, role, latency = argv
    arm(Path(control_dir), role, float(latency))
    from tests.dags.support import load_dag

    load_dag(dag_id).test()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
