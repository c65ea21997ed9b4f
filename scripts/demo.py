"""``make demo``: both example DAGs end to end against the local Pioneer emulator, no account, no network.

1. a throwaway AIRFLOW_HOME on SQLite under ``.demo/demo`` (wiped each run), ``airflow db migrate``;
2. the emulator on a free loopback port, ``pioneer_default`` pointed at it (in the metastore, as
   ``make airflow`` does);
3. ``airflow dags test pioneer_key_rotation``: a new key is created, stored in the Variable
   ``pioneer_api_key`` and the emulator's bootstrap key revoked;
4. ``airflow dags test pioneer_batch_inference``: 304 news sentences in 4 mapped shards, with the
   rotated key (the connection's own key is revoked by now);
5. ``airflow dags test pioneer_model_lifecycle``: upload labelled data, fine-tune (the wait deferred:
   ``dags test`` runs the trigger in-process), evaluate, gate on F1, extract with the new job id;
6. the summary, read from the runs' XComs and the output files, plus a scan of every log for the
   API keys. The emulator is stopped however the script ends; the exit code is non-zero if
   anything failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from local_env import (
    REPO,
    ROTATED_KEY_VARIABLE,
    Emulator,
    airflow_env,
    fresh_dir,
    run_logged,
    setup_airflow_home,
)

DEMO = REPO / ".demo" / "demo"
DAGS = ("pioneer_key_rotation", "pioneer_batch_inference", "pioneer_model_lifecycle")
DAG_TIMEOUT_S = 150


class LogFilter:
    """What of ``airflow dags test``'s output to show live: the provider's and the example DAGs' own
    log lines, task starts, run ends, warnings and errors; shortened to ``HH:MM:SS message``.
    Everything stays in the full log file.

    A multi-line message names its logger only on its last line, so such lines are held until then.
    """

    _START = re.compile(r"^\d{4}-\d\d-\d\dT(\d\d:\d\d:\d\d)\S*\s+\[(\w+)\s*\]\s(.*)$")
    _END = re.compile(r"^(.*?)\s+\[([\w.<>-]+)\](?:\s+\w+=.*)?$")
    _OURS = re.compile(
        r"airflow_provider_pioneer|pioneer_batch_inference|pioneer_key_rotation|pioneer_model_lifecycle"
    )
    _TASK_START = re.compile(r"\[DAG TEST\] starting task_id=(\S+) map_index=(-?\d+)")
    _NOISE = re.compile(r"DeprecationWarning|is deprecated|graphviz")

    def __init__(self) -> None:
        self._held: list[str] = []
        self._head: tuple[str, str] | None = None  # (clock, level) of the held message

    def __call__(self, raw: str) -> str | None:
        line = raw.rstrip("\n")
        start = self._START.match(line)
        if start is not None:
            clock, level, rest = start.groups()
            self._head, self._held = (clock, level), []
            line = rest
        elif self._head is None:
            return "            " + line if line.startswith(("Traceback", "  File", "    ")) else None
        end = self._END.match(line)
        if end is None:  # the message goes on in the next line
            self._held.append(line)
            return None
        text, logger = end.groups()
        (clock, level), self._head = self._head, None
        message = "\n".join([*self._held, text])
        return self._render(clock, level, message, logger)

    def _render(self, clock: str, level: str, message: str, logger: str) -> str | None:
        task = self._TASK_START.search(message)
        if task is not None:
            task_id, map_index = task.groups()
            return f"  {clock}  > {task_id}" + (f"[{map_index}]" if map_index != "-1" else "")
        if message.startswith("DagRun Finished"):
            state = re.search(r"state=(\w+)", message)
            return f"  {clock}  run finished: {state.group(1) if state else '?'}"
        if self._NOISE.search(message):
            return None
        if self._OURS.search(logger) or level in ("warning", "error", "critical"):
            return f"  {clock}  " + message.replace("\n", "\n            ")
        return None


def _say(message: str = "") -> None:
    print(message, flush=True)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(143)  # unwinds through the finally blocks, so the emulator is stopped


def _read_results(env: dict[str, str]) -> dict[str, Any]:
    """Return values of the two runs and the stored Variable, straight from the demo's metadata DB."""
    os.environ.update(env)  # before the first Airflow import: the DB is the demo's SQLite file
    from airflow.models.variable import Variable as VariableModel
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    def xcom(session: Any, dag_id: str, task_id: str) -> Any:
        row = session.scalars(
            select(XComModel)
            .where(XComModel.dag_id == dag_id, XComModel.task_id == task_id, XComModel.key == "return_value")
            .order_by(XComModel.timestamp.desc())
        ).first()
        return None if row is None else XComModel.deserialize_value(row)

    with create_session() as session:
        stored = session.scalars(
            select(VariableModel).where(VariableModel.key == ROTATED_KEY_VARIABLE)
        ).first()
        return {
            "rotation": xcom(session, "pioneer_key_rotation", "rotate_api_key"),
            "batch": xcom(session, "pioneer_batch_inference", "aggregate_entities"),
            "lifecycle": xcom(session, "pioneer_model_lifecycle", "report"),
            "stored_key": None if stored is None else json.loads(stored.val)["api_key"],
        }


def _leaks(secrets: list[str], roots: list[Path]) -> list[Path]:
    """Files under ``roots`` that contain any of ``secrets`` (the demo's logs, task logs and outputs)."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.suffix in {".log", ".jsonl", ".json", ""}:
                text = path.read_text(errors="replace")
                if any(s and s in text for s in secrets):
                    found.append(path)
    return found


def _print_summary(results: dict[str, Any], alive: list[str], elapsed: float, logs: Path) -> None:
    rotation, batch = results["rotation"] or {}, results["batch"] or {}
    output = batch.get("output_path", "")
    _say()
    _say("=" * 72)
    _say(f"Pioneer demo: all {len(DAGS)} DAGs succeeded in {elapsed:.0f} s")
    _say("=" * 72)
    _say(f"Key rotation    new key {rotation.get('name')!r} stored in Variable {ROTATED_KEY_VARIABLE!r}")
    _say(f"                revoked: {', '.join(rotation.get('revoked') or []) or 'nothing'}")
    _say(f"                keys alive on the emulator: {', '.join(alive)}")
    _say(
        f"Batch inference {batch.get('items')} items in {batch.get('shards')} shards: "
        f"{batch.get('succeeded')} succeeded, {batch.get('failed')} failed, "
        f"{batch.get('requests')} requests, {batch.get('token_usage')} tokens"
    )
    _say("Entities per label")
    for label, count in (batch.get("entities_per_label") or {}).items():
        _say(f"    {label:<14}{count:>6}")
    lifecycle = results.get("lifecycle") or {}
    _say(
        f"Model lifecycle trained {lifecycle.get('model_name')} (job {lifecycle.get('job_id')}, "
        f"{lifecycle.get('job_status')}), F1 {lifecycle.get('f1')}, then extracted from "
        f"{lifecycle.get('succeeded')} texts with it"
    )
    _say(f"Output          {output.removeprefix('file://')}")
    first = sorted(Path(output.removeprefix("file://")).glob("shard-*.jsonl"))[:1] if output else []
    if first:
        record = json.loads(first[0].read_text().splitlines()[0])
        ents = {k: [e["text"] for e in v] for k, v in record["result"]["entities"].items() if v}
        _say(f"First record    {record['id']}: {ents}")
    _say(f"Logs            {logs}")
    _say("No API key appears in any log or output file.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=DEMO, help=f"wiped and reused (default {DEMO})")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C works even if started ignored
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    home = fresh_dir(args.workdir.resolve())
    logs = home / "logs"
    logs.mkdir()
    output = home / "output"
    _say(f"Pioneer demo: throwaway Airflow home in {home} (SQLite)")

    with Emulator(port=0) as emulator:
        _say(f"Pioneer emulator on {emulator.url} (stopped when the demo ends)")
        env = airflow_env(home / "airflow", output)
        airflow = str(Path(sys.executable).with_name("airflow"))

        _say("airflow db migrate, connection pioneer_default ...")
        failed = setup_airflow_home(env, emulator, logs)
        if failed:
            _say(f"FAILED: {failed}")
            return 1

        logical_date = datetime.now(UTC).replace(microsecond=0).isoformat()
        for dag_id in DAGS:
            _say(f"\n== airflow dags test {dag_id} {logical_date}")
            log_path = logs / f"{dag_id}.log"
            code = run_logged(
                [airflow, "dags", "test", dag_id, logical_date],
                env,
                log_path,
                DAG_TIMEOUT_S,
                echo=LogFilter(),
            )
            if code != 0:
                reason = f"timed out after {DAG_TIMEOUT_S} s" if code == 124 else f"exit code {code}"
                tail = log_path.read_text(errors="replace").splitlines()[-40:]
                _say("\n".join(tail))
                _say(f"\nFAILED: {dag_id} ({reason}); full log: {log_path}")
                return 1

        results = _read_results(env)
        alive = emulator.alive_key_names()
        secrets = [emulator.api_key, results["stored_key"] or ""]
        leaked = _leaks(secrets, [logs, home / "airflow" / "logs", output])
        if leaked:
            _say(f"FAILED: an API key appears in {', '.join(map(str, leaked))}")
            return 1
        if not results["rotation"] or not results["batch"] or not results["lifecycle"]:
            _say("FAILED: a run finished without its return value (see the logs in " + str(logs) + ")")
            return 1
    _print_summary(results, alive, time.monotonic() - started, logs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
