"""``make demo``'s script end to end, as a user runs it: a child process, its own Airflow home, the emulator.

About 50 s: one ``airflow db migrate`` and three ``airflow dags test`` runs in child processes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests

# `make test-demo` (its own step of .ci/run), not `make test`: two whole runs of scripts/demo.py
# (each a fresh Airflow home and every example DAG) take about two minutes of the suite's ten.
pytestmark = pytest.mark.demo

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "example_dags" / "data" / "news_sample.jsonl"


def run_demo(workdir: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    # The user's shell, not the suite's: no Airflow settings of the test session leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PIONEER_"))}
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / "demo.py"), "--workdir", str(workdir)],
        capture_output=True,
        text=True,
        env={**env, **extra_env},
        cwd=REPO,
        timeout=280,
        check=False,
    )


def assert_emulator_stopped(out: str) -> None:
    url = re.search(r"Pioneer emulator on (http://127\.0\.0\.1:\d+)", out)
    assert url is not None, out[-3000:]
    try:
        requests.get(f"{url.group(1)}/health", timeout=1)
    except requests.ConnectionError:
        return
    raise AssertionError(f"the emulator at {url.group(1)} still answers after the demo ended")


def test_demo_runs_every_dag_and_prints_the_summary(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    result = run_demo(workdir)
    out = result.stdout
    assert result.returncode == 0, out[-4000:] + result.stderr[-2000:]

    n = sum(1 for line in SAMPLE.read_text().splitlines() if line.strip())
    assert f"{n} items in 4 shards: {n} succeeded, 0 failed" in out
    assert "revoked: bootstrap" in out
    rotated = re.search(
        r"new key '(airflow-pioneer_api_key-[^']+)' stored in Variable 'pioneer_api_key'", out
    )
    assert rotated is not None, out[-3000:]
    assert f"keys alive on the emulator: {rotated.group(1)}" in out
    counts = {m[0]: int(m[1]) for m in re.findall(r"^\s{4}(\w+)\s+(\d+)$", out, re.M)}
    assert set(counts) == {"organization", "person", "product", "location", "date", "money"}
    assert all(c > 0 for c in counts.values()), counts
    assert "No API key appears in any log or output file." in out
    lifecycle = re.search(
        r"Model lifecycle trained (news-ner-\S+) \(job ([0-9a-f-]{36}), deployed\), F1 ([0-9.]+)", out
    )
    assert lifecycle is not None, out[-3000:]
    assert float(lifecycle.group(3)) >= 0.8 and f"then extracted from {n} texts with it" in out

    output_dir = Path(re.search(r"^Output\s+(\S+)$", out, re.M).group(1))  # type: ignore[union-attr]
    assert output_dir.is_relative_to(workdir)
    ids = [
        json.loads(line)["id"]
        for shard in sorted(output_dir.glob("shard-*.jsonl"))
        for line in shard.read_text().splitlines()
    ]
    assert ids == [json.loads(line)["id"] for line in SAMPLE.read_text().splitlines() if line.strip()]
    # The emulator is stopped when the demo ends: nothing listens on its port any more.
    assert_emulator_stopped(out)


def test_demo_exits_non_zero_and_names_the_failed_dag(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    result = run_demo(tmp_path / "demo", PIONEER_EXAMPLE_INPUT=str(empty))
    assert result.returncode == 1, result.stdout[-3000:]
    assert "FAILED: pioneer_batch_inference" in result.stdout
    assert "has no records" in result.stdout  # the cause is shown, not only the log's path
    assert "DAGs succeeded" not in result.stdout
    assert_emulator_stopped(result.stdout)
