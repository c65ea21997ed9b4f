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

The test's side is :func:`race`: it starts the two processes, releases each round's rotations at
:data:`GAPS` apart while a :class:`StoreWatch` checks that the store holds a live key at every
moment, and lets the test check each round and the follow-up rotation after it. The Variable's
race (``tests/dags/test_rotation_dags.py``) and the Secrets Manager's
(``tests/dags/test_rotation_secrets_manager.py``) differ only in how they read the store and what
they check.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator

_WAIT_LIMIT = 180.0
REPO = Path(__file__).resolve().parents[1]

RACE_A = "pioneer_test_rotation_race_a"
RACE_B = "pioneer_test_rotation_race_b"
# Start gaps between the two rotations, seconds: from "same instant" to "one is nearly done"
# (as many as the race DAGs have rounds: tests/dags/dagfiles/pioneer_test_rotation_race.py).
GAPS = (0.0, 0.05, 0.15, 0.3, 0.5, 0.8, 1.2)
# Every Pioneer call of the racing processes waits this long first, so that a rotation takes about
# a second and the two overlap at every step for the gaps above.
LATENCY = 0.12


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


# -- the test's side ----------------------------------------------------------------------------


def key_and_name(value: str | None) -> tuple[str | None, str | None]:
    """The key and its name in a stored value (a document, or a bare key)."""
    if not value:
        return None, None
    try:
        doc = json.loads(value)
    except ValueError:
        return value, None
    if not isinstance(doc, dict):
        return None, None
    return doc.get("api_key"), doc.get("name")


class StoreWatch:
    """Polls the store during a race: it must hold a live key at every moment.

    A violation counts only when the store held the same value before and after the liveness
    check (else it merely changed meanwhile, and the key it held before may be revoked now).

    :param read: the store's current value, as readers get it.
    :param is_alive: whether Pioneer still accepts a key.
    """

    def __init__(self, read: Callable[[], str | None], is_alive: Callable[[str], bool]) -> None:
        self.read, self.is_alive = read, is_alive
        self.violations: list[str | None] = []
        self.checks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            first = self.read()
            key, name = key_and_name(first)
            alive = bool(key and self.is_alive(key))
            if not alive and self.read() == first:
                self.violations.append(name)
            self.checks += 1
            self._stop.wait(0.005)

    def __enter__(self) -> StoreWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def wait_file(path: Path, children: list[subprocess.Popen[str]], limit: float = _WAIT_LIMIT) -> str:
    """``path``'s text once it exists; fails when a racing process exits first, or after ``limit``."""
    deadline = time.monotonic() + limit
    while not path.exists():
        for child in children:
            assert child.poll() is None, f"a racing process exited ({child.returncode}) before {path.name}"
        assert time.monotonic() < deadline, f"gave up waiting for {path.name}"
        time.sleep(0.01)
    return path.read_text()  # written atomically: complete once it exists


def race(
    control: Path,
    env: dict[str, str],
    *,
    store: str,
    read: Callable[[], str | None],
    is_alive: Callable[[str], bool],
    check_round: Callable[[float, dict[str, dict[str, Any]]], None],
    check_settled: Callable[[float], None],
) -> str:
    """Race two rotations of one store at every gap of :data:`GAPS`; return the processes' output.

    Each round, the two rotations start ``gap`` apart (which one first alternates) while a
    :class:`StoreWatch` checks the store; ``check_round(gap, {role: result})`` then checks their
    results, and after the next night's rotation, ``check_settled(gap)`` the store and the account.
    At the end: one run lost the race at some gap, both said so, and neither logged a key.

    :param control: the folder of the control files.
    :param env: the processes' environment (the test's: the connection, the Fernet key).
    :param store: how a failure names the store (``the Variable``).
    :param read: the store's current value.
    :param is_alive: whether Pioneer still accepts a key.
    """
    from tests.conftest import leaked_in  # here: importing it sets up an Airflow home

    children: list[subprocess.Popen[str]] = []
    logs = []
    for role, dag_id in (("a", RACE_A), ("b", RACE_B)):
        if children:
            # One process sets its DAG run up at a time: two at once wait on SQLite's lock for long.
            wait_file(control / "ready-a-rotate_0", children)
        log = (control / f"child-{role}.log").open("w")
        logs.append(log)
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.rotation_race", dag_id, str(control), role, str(LATENCY)],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )

    def release(tag: str, at: float) -> None:
        write_atomically(control / f"go-{tag}", repr(at))

    def result(tag: str) -> dict[str, Any]:
        return dict(json.loads(wait_file(control / f"result-{tag}", children)))

    outcomes: list[tuple[float, str, str]] = []
    try:
        for i, gap in enumerate(GAPS):
            for role in ("a", "b"):
                wait_file(control / f"ready-{role}-rotate_{i}", children)
            first, second = ("a", "b") if i % 2 == 0 else ("b", "a")
            with StoreWatch(read, is_alive) as watch:
                start = time.time() + 0.2
                release(f"{first}-rotate_{i}", start)
                release(f"{second}-rotate_{i}", start + gap)
                results = {role: result(f"{role}-rotate_{i}") for role in ("a", "b")}
            assert watch.checks > 10
            assert not watch.violations, f"gap {gap}: {store} held a revoked key: {watch.violations}"
            check_round(gap, results)
            outcomes += [
                (gap, role, "superseded" if r["value"].get("superseded") else "stored")
                for role, r in results.items()
            ]

            # The next night: one live managed key, the stored one, and nothing else.
            wait_file(control / f"ready-a-next_{i}", children)
            release(f"a-next_{i}", time.time())
            follow_up = result(f"a-next_{i}")
            assert follow_up["ok"], (gap, follow_up)
            check_settled(gap)
        for child in children:
            assert child.wait(timeout=120) == 0
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        for log in logs:
            log.close()
    # The race was real: at some gap one run's key lost to the other's.
    assert any(kind == "superseded" for _, _, kind in outcomes), outcomes
    output = "".join((control / f"child-{role}.log").read_text() for role in ("a", "b"))
    assert "Pioneer key rotated" in output and "Another rotation" in output
    assert not leaked_in(output), "a racing process logged a key"
    return output


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
