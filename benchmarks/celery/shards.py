"""One job in 8 shards over 2 Celery workers, one rate-limited account, with and without headers.

    make bench-celery                                   # the recorded run (about 5 minutes)
    .venv/bin/python benchmarks/celery/shards.py --texts 3200 --arms headers   # shorter

Issue 17, item 6: the pacing measured on a real CeleryExecutor deployment, not in-process. It
deploys what ``make e2e`` deploys (``scripts/e2e.py``'s ``deploy``: a private PostgreSQL, Redis,
moto's S3, the api-server, scheduler, dag-processor, triggerer and two ``airflow celery worker``
processes on two hostnames, all on 127.0.0.1, all stopped at the end), with the emulator limiting
ONE account (every shard's key) to ``--limit-rpm`` in a ``--model`` window of ``--window-seconds``.
Then it runs the DAG ``shards_dag.py`` (``--shards`` mapped ``PioneerInferenceOperator`` tasks,
default settings but a small ``batch_size``, each shard in its own pool slot: 4 per worker) once
per arm, side by side in one deployment:

* ``headers``: the emulator sends ``X-RateLimit-Limit/-Remaining/-Reset``;
* ``hidden``: it hides them: 429s with ``Retry-After`` only.

Measured per arm, from the emulator's counters (sampled every 0.5 s) and the task instances:

* **share of the bound**: the job's texts over the time from its first request to the last
  shard's end, against ``limit x batch_size / 60`` texts/s;
* **job wall time vs the bound's time** (texts / bound): the target is at most 1.2x;
* **429 share** of ``POST /inference`` requests;
* **while all run**: successful requests between the last shard's start and the first one's end;
* **per shard**: requests, 429s, its task's duration, and its texts/s as a share of the fair
  share (bound / shards): the target is at least half;
* requests per 10 s over the job (successes and 429s), the machine's load before and after.

Results go to ``benchmarks/celery/results-<date>-<label>.json`` with the commit; the table is
printed for ``benchmarks/README.md``. Never part of ``make test``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
# Before importing the e2e modules, which read them: 4 slots on each of the 2 workers and a pool of
# 8, so all 8 shards run at once; a short delay per text (the e2e's 80 ms makes shards slow on
# purpose, for its faults), so the account's limit, not the latency, is what binds.
os.environ.setdefault("PIONEER_E2E_WORKER_CONCURRENCY", "4")
os.environ.setdefault("PIONEER_E2E_POOL_SLOTS", "8")
os.environ.setdefault("PIONEER_E2E_PER_TEXT_MS", "2")
sys.path[:0] = [str(REPO / "scripts"), str(REPO / "benchmarks" / "inference"), str(REPO)]

import e2e  # noqa: E402
import e2e_celery as celery  # noqa: E402
from e2e_base import Emulator, Failed, Postgres, Processes, say, wait_for, wait_run  # noqa: E402
from shared_account import _sampler, counted_between  # noqa: E402

DAG_ID = "pioneer_bench_shards"
ARMS = {"headers": "adaptive, X-RateLimit-* headers", "hidden": "adaptive, Retry-After only"}


def _epoch(stamp: str | None) -> float | None:
    return dt.datetime.fromisoformat(stamp).timestamp() if stamp else None


def _summary(api: e2e.Api, run_id: str, map_index: int) -> dict[str, Any]:
    try:
        doc = api.call(
            "GET",
            f"dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/extract/xcomEntries/pioneer_summary",
            params={"map_index": map_index},
        )
    except Failed:
        return {}
    value = doc.get("value")
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return dict(value) if isinstance(value, dict) else {}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def arm(
    name: str,
    args: argparse.Namespace,
    api: e2e.Api,
    control: Any,
    s3: celery.S3,
    procs: Processes,
    report: e2e.Report,
    texts: int,
) -> dict[str, Any]:
    bound = args.limit_rpm * args.batch_size / 60.0
    control.set_rate_limit_headers(name == "headers")
    # Both windows a sliding counter weighs must be empty of the previous arm's requests.
    time.sleep(2 * args.window_seconds + 1)
    control.reset_counters()
    load_before = _load()
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sampler, args=(control, stop, samples), daemon=True)
    sampler.start()
    run_id = f"bench_{name}"
    t_trigger = time.time()
    api.call(
        "POST",
        f"dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": run_id, "logical_date": None,
              "conf": {"prefix": s3.url("bench"), "shards": args.shards}},
    )  # fmt: skip
    try:
        run = wait_run(api, DAG_ID, run_id, timeout=texts / bound * 6 + 600, procs=procs)
    finally:
        stop.set()
        sampler.join()
    t_done = time.time()
    counters = control.counters()
    requests_ = int(counters["requests"].get("POST /inference", 0))
    r429 = int(counters["statuses"].get("429", 0))
    tis = [ti for ti in api.task_instances(DAG_ID, run_id) if ti["task_id"] == "extract"]
    first = next((t for t, req, _ in samples if req > 0), t_trigger)
    starts = [_epoch(ti.get("start_date")) or first for ti in tis]
    ends = [_epoch(ti.get("end_date")) or t_done for ti in tis]
    last_end = max(ends) if ends else t_done
    wall = max(last_end - first, 1e-9)
    bound_time = texts / bound
    steady = None
    if tis and min(ends) - max(starts) >= 2.0:
        ok, _ = counted_between(samples, max(starts), min(ends))
        steady = ok * args.batch_size / (min(ends) - max(starts)) / bound
    fair = bound / args.shards
    shards = []
    for ti, start, end in sorted(zip(tis, starts, ends, strict=True), key=lambda x: x[0]["map_index"]):
        summary = _summary(api, run_id, int(ti["map_index"]))
        done = int(summary.get("succeeded") or 0)
        shards.append({
            "map_index": ti["map_index"], "state": ti["state"], "host": ti.get("hostname"),
            "try_number": ti.get("try_number"), "start_s": round(start - first, 1), "end_s": round(end - first, 1),
            "duration_s": round(end - start, 1), "texts": done, "requests": summary.get("requests"),
            "rate_limited": summary.get("rate_limited"), "retries": summary.get("retries"),
            "share_of_fair": round(done / max(end - start, 1e-9) / fair, 3),
        })  # fmt: skip
    # Requests per 10 s from the job's first request, as in the issue's table (successes, 429s).
    buckets: list[list[int]] = []
    prev = (first, 0, 0)
    for t, req, r4 in samples:
        i = int((t - first) // 10)
        if i < 0:
            prev = (t, req, r4)
            continue
        while len(buckets) <= i:
            buckets.append([0, 0])
        buckets[i][0] += (req - r4) - (prev[1] - prev[2])
        buckets[i][1] += r4 - prev[2]
        prev = (t, req, r4)
    ids, errors, files, _ = celery.s3_read_outputs(s3, f"bench/out/{run_id}/")
    expected = {f"e2e-{i:05d}" for i in range(texts)}
    once = set(ids) == expected and all(n == 1 for n in ids.values()) and errors == 0
    report.check(
        f"arm {name}: the run succeeded, every text once in the output",
        run["state"] == "success" and once and len(files) == args.shards,
        f"run {run['state']}; {sum(ids.values())} records in {len(files)} shard files for {texts} texts, "
        f"{errors} errors",
    )
    row = {
        "arm": name, "label": ARMS[name], "shards": args.shards, "texts": texts,
        "batch_size": args.batch_size, "limit_rpm": args.limit_rpm, "model": args.model,
        "window_s": args.window_seconds, "bound_texts_per_s": bound, "bound_time_s": round(bound_time, 1),
        "job_wall_s": round(wall, 1), "wall_vs_bound_time": round(wall / bound_time, 3),
        "ratio_to_bound": round(bound_time / wall, 4), "steady_ratio_to_bound": steady,
        "run_wall_s": round(t_done - t_trigger, 1), "first_request_after_trigger_s": round(first - t_trigger, 1),
        "requests": requests_, "rate_limited": r429, "share_429": r429 / requests_ if requests_ else 0.0,
        "tasks_failed": sum(1 for s in shards if s["state"] != "success"),
        "min_share_of_fair": min((s["share_of_fair"] for s in shards), default=None),
        "shards_detail": shards, "per_10s_ok_429": buckets,
        "load_before": load_before, "load_after": _load(),
    }  # fmt: skip
    say(
        f"arm {name}: {row['ratio_to_bound']:.1%} of the bound, wall {row['job_wall_s']} s vs "
        f"{row['bound_time_s']} s ({row['wall_vs_bound_time']:.2f}x), 429 {row['share_429']:.2%}, "
        f"shards {[s['requests'] for s in shards]} requests, min {row['min_share_of_fair']} of fair"
    )
    return row


def table(rows: list[dict[str, Any]]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    lines = [
        "| arm | texts | bound (texts/s) | share of bound | while all run | 429 share | job wall / bound's time "
        "| shards: requests (429s) | min shard share of fair | load before/after |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = ", ".join(f"{s['requests']} ({s['rate_limited']})" for s in r["shards_detail"])
        lines.append(
            f"| {r['label']} | {r['texts']:,} | {r['bound_texts_per_s']:.0f} | {pct(r['ratio_to_bound'])} "
            f"| {pct(r['steady_ratio_to_bound'])} | {r['share_429']:.2%} "
            f"| {r['job_wall_s']} s / {r['bound_time_s']} s = {r['wall_vs_bound_time']:.2f}x | {per} "
            f"| {r['min_share_of_fair']} | {r['load_before']} / {r['load_after']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--texts", type=int, default=6400)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--limit-rpm", type=float, default=1200.0)
    parser.add_argument("--model", default="sliding_window",
                        choices=("token_bucket", "fixed_window", "moving_window", "sliding_window"))  # fmt: skip
    parser.add_argument("--window-seconds", type=float, default=10.0)
    parser.add_argument("--arms", default="headers,hidden", help="comma-separated: headers, hidden")
    parser.add_argument("--label", default="", help="a name for the results file (e.g. the controller)")
    args = parser.parse_args()
    arms = [a for a in args.arms.split(",") if a]
    if not set(arms) <= set(ARMS):
        parser.error(f"--arms: each one of {', '.join(ARMS)}")
    os.environ["PIONEER_BENCH_BATCH_SIZE"] = str(args.batch_size)  # the DAG's, in every Airflow process
    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    dirty = bool(subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=False).stdout.strip())  # fmt: skip
    rows: list[dict[str, Any]] = []
    started = dt.datetime.now(dt.UTC)

    def body(
        report: e2e.Report,
        procs: Processes,
        pg: Postgres,
        emulator: Emulator,
        redis: celery.Redis,
        s3: celery.S3,
    ) -> None:
        from airflow_provider_pioneer.testing.server import EmulatorControl

        home = e2e.RUN / "airflow"
        (home / "dags").mkdir(parents=True)
        shutil.copy(HERE / "shards_dag.py", home / "dags" / "shards_dag.py")
        data = e2e.RUN / "input.jsonl"
        e2e.write_input(data, args.texts)
        _, api, _workers = e2e.deploy(report, procs, pg, emulator, "celery", redis, s3, home, None)
        lines = data.read_text().splitlines()
        per = -(-len(lines) // args.shards)
        for i in range(args.shards):
            s3.put(
                f"bench/in/shard-{i:03d}.jsonl",
                "".join(f"{ln}\n" for ln in lines[i * per : (i + 1) * per]).encode(),
            )

        def parsed() -> bool:
            errors = api.call("GET", "importErrors")["import_errors"]
            if errors:
                raise Failed(f"DAG import errors: {json.dumps(errors)[:1500]}")
            return DAG_ID in {d["dag_id"] for d in api.call("GET", "dags", params={"limit": 100})["dags"]}

        with report.step("benchmark DAG parsed and unpaused"):
            wait_for("the benchmark DAG to be parsed", parsed, 300, procs)
            api.call("PATCH", f"dags/{DAG_ID}", json={"is_paused": False})
        control = EmulatorControl(emulator.url)
        for name in arms:
            with report.step(f"arm {name}: {args.shards} shards, {args.texts} texts"):
                rows.append(arm(name, args, api, control, s3, procs, report, args.texts))

    code = e2e.run_deployment(
        "celery",
        body,
        emulator_options=[
            "--rate-limit-per-minute",
            str(args.limit_rpm),
            "--rate-limit-model",
            args.model,
            "--rate-limit-window-seconds",
            str(args.window_seconds),
        ],
        title="celery shards benchmark",
    )
    if not rows:
        return code or 1
    doc = {
        "benchmark": "benchmarks/celery/shards.py",
        "started_utc": started.isoformat(timespec="seconds"),
        "commit": commit + (" (with uncommitted changes)" if dirty else ""),
        "argv": sys.argv[1:],
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "per_text_ms": e2e.PER_TEXT_MS,
            "worker_concurrency": celery.WORKER_CONCURRENCY,
            "pool_slots": e2e.POOL_SLOTS,
            "latency_ms": 50,
            "max_concurrency": 4,
        },
        "rows": rows,
    }
    suffix = f"-{args.label}" if args.label else ""
    out = HERE / f"results-{started:%Y-%m-%d}{suffix}.json"
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\n{out.relative_to(REPO)} (commit {doc['commit']})\n\n{table(rows)}\n", flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
