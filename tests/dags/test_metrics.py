"""Metrics through Airflow's Stats, received by a StatsD listener (a UDP socket on loopback).

A child process runs the rotation DAG, then the file inference DAG, with ``[metrics] statsd_on``
pointing at the socket; the datagrams must carry the counts the runs report in their XComs.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dags.support import xcom_value
from tests.dags.test_rotation_dags import VAR, set_metastore

pytestmark = pytest.mark.dags

REPO = Path(__file__).resolve().parents[2]
PREFIX = "pioneer_test"


@pytest.fixture
def statsd_socket() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock
    finally:
        sock.close()


def _received(sock: socket.socket) -> list[str]:
    """Every metric line the socket holds now (a datagram may carry several, newline-separated)."""
    sock.setblocking(False)
    lines: list[str] = []
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return lines
        lines += data.decode().splitlines()


def test_runs_emit_pioneer_metrics_to_statsd(
    airflow_db: Path, pioneer_emulator: Any, statsd_socket: socket.socket, tmp_path: Path
) -> None:
    emu = pioneer_emulator
    rows = [{"id": i, "text": f"Alice Smith joined Acme Corp in Paris ({i})."} for i in range(40)]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    conn = {
        "conn_type": "pioneer",
        "host": emu.url,
        "password": emu.api_key,
        "extra": {"key_variable": VAR, "key_name": emu.api_key_name},
    }
    env = {
        **os.environ,
        "AIRFLOW_CONN_PIONEER_DEFAULT": json.dumps(conn),
        "AIRFLOW__METRICS__STATSD_ON": "True",
        "AIRFLOW__METRICS__STATSD_HOST": "127.0.0.1",
        "AIRFLOW__METRICS__STATSD_PORT": str(statsd_socket.getsockname()[1]),
        "AIRFLOW__METRICS__STATSD_PREFIX": PREFIX,
        "PYTHONPATH": str(REPO),
    }
    # Two 429s (retried at once) in the inference run: the rate_limited counter must show them.
    emu.inject(status=429, times=2, after=3, headers={"Retry-After": "0"})
    runs = [
        ["pioneer_test_rotation", {}],
        [
            "pioneer_test_inference_file",
            {"input_path": (tmp_path / "in.jsonl").as_uri(), "output_path": str(tmp_path / "out.jsonl")},
        ],
    ]
    set_metastore(None)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tests.dags.metrics_child", json.dumps(runs)],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    finally:
        set_metastore(None)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    finished = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{"dag_id"')]
    inference_run = finished[1]["run_id"]
    summary = xcom_value("pioneer_test_inference_file", inference_run, "infer", "pioneer_summary")

    counters: dict[str, int] = defaultdict(int)
    gauges: dict[str, float] = {}
    for line in _received(statsd_socket):
        name, _, rest = line.partition(":")
        if not name.startswith(f"{PREFIX}.pioneer."):
            continue
        value, kind = rest.split("|")[:2]
        if kind == "c":
            counters[name.removeprefix(PREFIX + ".")] += int(value)
        elif kind == "g":
            gauges[name.removeprefix(PREFIX + ".")] = float(value)

    assert summary["succeeded"] == 40 and summary["rate_limited"] == 2, summary
    assert dict(counters) == {
        "pioneer.inference.texts_succeeded": 40,
        "pioneer.inference.tokens": summary["token_usage"],
        "pioneer.inference.requests": summary["requests"],
        "pioneer.inference.rate_limited": 2,
    }
    # Right after a rotation the stored key is brand new (its age: seconds, not days).
    assert set(gauges) == {"pioneer.key_rotation.key_age_seconds"}
    assert 0 <= gauges["pioneer.key_rotation.key_age_seconds"] < 3600
