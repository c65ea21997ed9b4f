"""Scenario D: P concurrent tasks, each its own process, on ONE account's rate limit.

    .venv/bin/python benchmarks/inference/shared_account.py --seconds 20 --batch-size 4  # recorded (~12 min)
    .venv/bin/python benchmarks/inference/shared_account.py --quick    # P = 1, 4 only, short
    .venv/bin/python benchmarks/inference/shared_account.py --api-profile legacy --limit-rpm 1200 \
        --tasks 1 --variants bc                                         # one task, the June 2026 API
    .venv/bin/python benchmarks/inference/shared_account.py --model sliding_window --window-seconds 5 \
        --limit-rpm 1200 --variants ab                                  # another limiter model

Like mapped shards on different workers: every task is a separate process running
``PioneerInferenceOperator.execute()`` with default settings on its own shard, all with the
same key (one account) against one emulator (a child process) that limits the account to
5,000 requests/min. Side by side in one run, for P = 1, 4, 8, 16:

(a) the adaptive default, the server sending ``X-RateLimit-*`` headers;
(b) the adaptive default, the server hiding them (``Retry-After`` only);
(c) the earlier releases' static split: a fixed ``requests_per_minute = limit / P`` per task;
(d) the naive setting: each task at a fixed ``requests_per_minute = limit``;
(e) the adaptive default with the user's ceiling ``requests_per_minute = limit / P``, headers
    hidden (with ``--tasks 1 --variants ce``: one task with a ceiling, new pacer vs the fixed one).

The job is ``bound x seconds`` texts split into P equal shards; the tasks start together
(after a barrier: Airflow's imports are not timed). Measured per cell: aggregate texts/s
(all texts / time from the first request of any task to the end of the last task) against
the account bound
(``limit x batch_size / 60``), the 429 share (the emulator's own counters), tasks failed, and
the time to converge (from the start until the account's successful requests/s, over 2 s,
first reach 90% of the limit). Results go to ``results-<date>-shared-account.json``.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import inspect
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench import LABELS, MODEL, make_input  # noqa: E402

LIMIT_RPM = 5000.0
API_PROFILE = "current"
#: The emulator's limiter (``--model``, ``--window-seconds``, ``--window-in-limit``).
LIMITER: dict[str, Any] = {}
VARIANTS = {
    "a": "adaptive, headers",
    "b": "adaptive, Retry-After only",
    "c": "static split (limit/P)",
    "d": "naive (limit each)",
    "e": "adaptive, ceiling limit/P, Retry-After only",
}


# -- one task (a child process) -----------------------------------------------------------------


def child(args: dict[str, Any]) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_PIONEER_DEFAULT"] = json.dumps(
        {"conn_type": "pioneer", "host": args["url"], "password": args["key"]}
    )
    from airflow_provider_pioneer.batching import runner
    from airflow_provider_pioneer.hooks.pioneer import PioneerHook
    from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator
    from airflow_provider_pioneer.pacing import Pacer

    if args["static"]:
        # The earlier releases' pacer: a fixed pace, 10% slower per 429.
        class FixedStoppablePacer(runner.StoppablePacer):
            def __init__(self, requests_per_minute: float | None, stop: threading.Event) -> None:
                Pacer.__init__(self, requests_per_minute, adaptive=False, sleep=self.wait)
                self._stop = stop

        runner.StoppablePacer = FixedStoppablePacer  # type: ignore[misc]

    class _TI:
        xcoms: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.xcoms[key] = value

    kwargs: dict[str, Any] = {"batch_size": args["batch_size"], "progress_interval": 3600.0}
    if args["rpm"] is not None:
        kwargs["requests_per_minute"] = args["rpm"]
    op = PioneerInferenceOperator(
        task_id="shard", model_id=MODEL, input_path=args["input"], output_path=args["output"],
        entities=LABELS, **kwargs,
    )  # fmt: skip
    first_call: list[float] = []
    infer = PioneerHook.infer

    def timed_infer(self: Any, *a: Any, **kw: Any) -> Any:
        if not first_call:
            first_call.append(time.time())  # the task's first request leaves now: it has started
        return infer(self, *a, **kw)

    PioneerHook.infer = timed_infer  # type: ignore[method-assign]
    # Warm up what execute() would load on its first call (fsspec, requests, the batching
    # modules, the client): import time is not pacing, and 16 processes importing at once on a
    # small machine would otherwise start minutes apart.
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_pioneer.batching import inputs, output, progress  # noqa: F401

    ObjectStoragePath(args["input"]).exists()
    op.hook.client  # noqa: B018
    trace = os.environ.get("PIONEER_BENCH_TRACE")  # a directory: each task's pace, answer by answer
    if trace:
        from airflow_provider_pioneer.pacing.rate import AdaptiveRate

        control = op.hook.client.pacer._control
        steps: list[list[float]] = []
        seen = AdaptiveRate.on_headers

        def traced(self: Any, info: Any, now: float, sent_at: float | None = None) -> None:
            seen(self, info, now, sent_at)
            reading = self._fresh(now)
            steps.append([round(time.time(), 3), info.remaining, info.reset_in, round(self.sharers, 2),
                          round(self.rate(now) * 60), round(self._round_trip.worst, 3), self.decreases,
                          None if sent_at is None else round(now - sent_at, 3),
                          None if reading is None else round(reading.reset_at - now, 3),
                          int(self._share.frees), int(self._window_end.fixed)])  # fmt: skip

        control.on_headers = traced.__get__(control)  # type: ignore[method-assign]
        atexit.register(
            lambda: Path(trace, f"{Path(args['output']).name}.json").write_text(json.dumps(steps))
        )
    print("READY", flush=True)
    go = Path(args["go"])
    while not go.exists():
        time.sleep(0.01)
    ti = _TI()
    start = time.time()
    failed = None
    try:
        op.execute({"ti": ti})  # type: ignore[arg-type]
    except BaseException as exc:  # a failed task is a result, not a crash of the benchmark
        failed = f"{type(exc).__name__}: {str(exc)[:300]}"
    end = time.time()
    pacer = op.hook.client.pacer
    describe = f"{pacer.describe()} ({getattr(pacer, 'pace_source', '?')})"
    return {"start": start, "end": end, "failed": failed, "pacer": describe,
            "first_request": first_call[0] if first_call else end,
            "summary": ti.xcoms.get("pioneer_summary")}  # fmt: skip


# -- one cell: P tasks, one variant ---------------------------------------------------------------


def _sampler(emu: Any, stop: threading.Event, samples: list[tuple[float, int, int]]) -> None:
    while not stop.is_set():
        c = emu.counters()
        samples.append(
            (time.time(), int(c["requests"].get("POST /inference", 0)), int(c["statuses"].get("429", 0)))
        )
        stop.wait(0.5)


def converge_time(samples: list[tuple[float, int, int]], t0: float, target_rps: float) -> float | None:
    """Seconds from ``t0`` until successful requests/s over 2 s first reach ``target_rps``."""
    for i, (t, req, r429) in enumerate(samples):
        for j in range(i + 1, len(samples)):
            t2, req2, r4292 = samples[j]
            if t2 - t >= 2.0:
                ok = (req2 - r4292) - (req - r429)
                if ok / (t2 - t) >= target_rps:
                    return max(0.0, t - t0)
                break
    return None


def counted_between(samples: list[tuple[float, int, int]], t1: float, t2: float) -> tuple[float, float]:
    """(successful requests, 429s) the emulator counted between ``t1`` and ``t2`` (interpolated samples)."""

    def at(t: float) -> tuple[float, float]:
        prev = samples[0]
        for cur in samples:
            if cur[0] >= t:
                if cur[0] == prev[0]:
                    return float(cur[1] - cur[2]), float(cur[2])
                f = (t - prev[0]) / (cur[0] - prev[0])
                ok = (prev[1] - prev[2]) + f * ((cur[1] - cur[2]) - (prev[1] - prev[2]))
                return ok, prev[2] + f * (cur[2] - prev[2])
            prev = cur
        return float(prev[1] - prev[2]), float(prev[2])

    ok1, r1 = at(t1)
    ok2, r2 = at(t2)
    return ok2 - ok1, r2 - r1


def cell(emu: Any, variant: str, p: int, *, work: Path, batch_size: int, seconds: float) -> dict[str, Any]:
    bound = LIMIT_RPM * batch_size / 60.0
    per_shard = int(bound * seconds / p)
    rpm = {"a": None, "b": None, "c": LIMIT_RPM / p, "d": LIMIT_RPM, "e": LIMIT_RPM / p}[variant]
    go = work / f"go-{variant}-{p}"
    procs = []
    for shard in range(p):
        data = work / f"in-{per_shard}.jsonl"
        if not data.exists():
            make_input(data, per_shard)
        out = work / f"out-{variant}-{p}-{shard}.jsonl"
        for stale in work.glob(f"{out.name}*"):
            if stale.is_dir():  # a failed task's checkpoint (``.parts``): --repeats crashed on it
                shutil.rmtree(stale)
            else:
                stale.unlink()
        args = {"url": emu.url, "key": emu.api_key, "input": str(data), "output": str(out),
                "batch_size": batch_size, "rpm": rpm, "static": variant in "cd", "go": str(go)}  # fmt: skip
        procs.append(subprocess.Popen(
            [sys.executable, __file__, "--child", json.dumps(args)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    for proc in procs:  # barrier: every task has imported Airflow and built its operator
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            raise RuntimeError(
                f"task did not start: {line}{proc.stderr.read()[-2000:] if proc.stderr else ''}"
            )
    emu.reset_counters()
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sampler, args=(emu, stop, samples), daemon=True)
    t0 = time.time()
    go.touch()
    sampler.start()
    results = []
    for proc in procs:
        out_text, err = proc.communicate(timeout=seconds * 20 + 120)
        lines = [ln for ln in out_text.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            results.append(
                {"start": t0, "end": time.time(), "failed": f"exit {proc.returncode}: {err[-500:]}"}
            )
        else:
            results.append(json.loads(lines[-1]))
    stop.set()
    sampler.join()
    c = emu.counters()
    requests_ = int(c["requests"].get("POST /inference", 0))
    r429 = int(c["statuses"].get("429", 0))
    end = max(r["end"] for r in results)
    total = per_shard * p
    # While all tasks run: from the last task's first request to the first task's end.
    all_from = max(r.get("first_request", t0) for r in results)
    all_to = min(r["end"] for r in results)
    steady = None
    if all_to - all_from >= 2.0 and len(samples) > 2:
        ok, _ = counted_between(samples, all_from, all_to)
        steady = ok * batch_size / (all_to - all_from) / bound
    first = min(r.get("first_request", t0) for r in results)
    # The account's throughput: every text, from the first request of any task to the end of the last.
    account = per_shard * p / max(max(r["end"] for r in results) - first, 1e-9)
    row = {
        "variant": variant, "label": VARIANTS[variant], "P": p, "texts": total, "batch_size": batch_size,
        "requests_per_minute_each": rpm, "bound_texts_per_s": bound,
        "texts_per_s": account, "ratio_to_bound": account / bound,
        "job_texts_per_s": total / (end - t0), "job_ratio_to_bound": total / (end - t0) / bound,
        "requests": requests_, "rate_limited": r429, "share_429": r429 / requests_ if requests_ else 0.0,
        "tasks_failed": sum(1 for r in results if r.get("failed")),
        "failures": [r["failed"] for r in results if r.get("failed")][:3],
        "steady_ratio_to_bound": steady, "steady_window_s": round(max(0.0, all_to - all_from), 2),
        "converge_s": converge_time(samples, first, 0.9 * LIMIT_RPM / 60.0),
        "task_seconds": sorted(round(r["end"] - t0, 2) for r in results),
        # From execute() to the task's first request (imports, input, checkpoint, client), per task.
        "startup_s": sorted(round(r.get("first_request", r["start"]) - r["start"], 2) for r in results),
        "pacers": sorted({r.get("pacer", "?") for r in results})[:4],
        # Each shard's first request and end, seconds after the barrier: its share over its life.
        "shards": [[round(r.get("first_request", r["start"]) - t0, 2), round(r["end"] - t0, 2)]
                   for r in results],
        "timeline_ok_429": [
            [round(t - t0, 1), req - r4 - (prev[1] - prev[2]), r4 - prev[2]]
            for prev, (t, req, r4) in itertools.pairwise(samples)
        ],
    }  # fmt: skip
    print(
        f"  {variant} P={p:2}: {row['ratio_to_bound']:6.1%} of bound, {row['job_ratio_to_bound']:6.1%} (job), "
        f"{'-' if steady is None else format(steady, '.1%')} while all run, 429 {row['share_429']:6.2%}, "
        f"failed {row['tasks_failed']}, converge {row['converge_s']} s, tasks end "
        f"{row['task_seconds'][0]}..{row['task_seconds'][-1]} s; {row['pacers'][:2]}",
        flush=True,
    )
    return row


def emulator_options(headers: bool, required: bool) -> dict[str, Any]:
    """Per-account 5,000 rpm, with or without rate-limit headers (the emulator's current profile)."""
    from airflow_provider_pioneer.testing import PioneerEmulator

    params = inspect.signature(PioneerEmulator).parameters
    opts: dict[str, Any] = {"rate_limit_per_minute": LIMIT_RPM, "subprocess": True}
    if LIMITER:
        if "rate_limit_model" not in params:
            raise RuntimeError("this emulator has one limiter model only: drop --model")
        opts.update(LIMITER)
    if "api_profile" in params:
        opts["api_profile"] = API_PROFILE
    for name in ("rate_limit_headers", "ratelimit_headers"):
        if name in params:
            opts[name] = headers
            break
    else:
        if "hide_rate_limit_headers" in params:
            opts["hide_rate_limit_headers"] = not headers
        elif required:
            raise RuntimeError("this emulator cannot send X-RateLimit-* headers (no current profile)")
    return opts


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def table(rows: list[dict[str, Any]]) -> str:
    """One line per (P, variant): medians over the repeats (``--repeats``), failures summed."""
    lines = [
        "| P | variant | runs | texts/s | bound | ratio to bound | while all run | 429 share "
        "| tasks failed | converge (s) | tasks end (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["P"], r["variant"]), []).append(r)
    for (p, variant), rs in sorted(cells.items()):
        conv = _median([r["converge_s"] for r in rs])
        steady = _median([r["steady_ratio_to_bound"] for r in rs])
        first = _median([r["task_seconds"][0] for r in rs]) or 0.0
        last = _median([r["task_seconds"][-1] for r in rs]) or 0.0
        lines.append(
            f"| {p} | ({variant}) {rs[0]['label']} | {len(rs)} | {_median([r['texts_per_s'] for r in rs]):.0f} "
            f"| {rs[0]['bound_texts_per_s']:.0f} | {_median([r['ratio_to_bound'] for r in rs]):.1%} "
            f"| {_pct(steady)} | {_median([r['share_429'] for r in rs]):.2%} "
            f"| {sum(r['tasks_failed'] for r in rs)} of {p * len(rs)} | {'-' if conv is None else f'{conv:.1f}'} "
            f"| {first:.1f}-{last:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="P = 1, 4 only, 10 s jobs")
    p.add_argument("--seconds", type=float, default=None, help="job length at the bound (default 25)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--latency-ms", type=float, default=20.0)
    p.add_argument("--tasks", default=None, help="comma-separated P values (default 1,4,8,16)")
    p.add_argument("--variants", default="abcd")
    p.add_argument("--limit-rpm", type=float, default=5000.0, help="the account limit (default 5,000)")
    p.add_argument(
        "--api-profile", default="current", help="emulator profile: current (per account) or legacy"
    )
    p.add_argument(
        "--repeats", type=int, default=1, help="rounds of every cell, interleaved; the table gives medians"
    )
    p.add_argument(
        "--model", default=None, help="the emulator's limiter: token_bucket (default), fixed_window, "
        "moving_window or sliding_window",
    )  # fmt: skip
    p.add_argument("--window-seconds", type=float, default=60.0, help="window of the window models")
    p.add_argument("--window-in-limit", action="store_true", help="send X-RateLimit-Limit: N;w=<window>")
    p.add_argument("--child", metavar="ARGS", help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        print(json.dumps(child(json.loads(ns.child))), flush=True)
        return 0
    from airflow_provider_pioneer.testing import PioneerEmulator

    global LIMIT_RPM, API_PROFILE
    LIMIT_RPM, API_PROFILE = ns.limit_rpm, ns.api_profile
    if ns.model is not None or ns.window_in_limit:
        LIMITER.update(
            rate_limit_model=ns.model or "token_bucket", rate_limit_window_seconds=ns.window_seconds,
            rate_limit_window_in_limit=ns.window_in_limit,
        )  # fmt: skip
    seconds = ns.seconds or (10.0 if ns.quick else 25.0)
    ps = [int(x) for x in (ns.tasks or ("1,4" if ns.quick else "1,4,8,16")).split(",")]
    rows = []
    load_before = os.getloadavg()
    began = time.time()
    with tempfile.TemporaryDirectory(prefix="pioneer-bench-d-") as tmp:
        work = Path(tmp)
        # Rounds interleave the variants: a noisy spell on the shared machine hits all of them.
        for round_ in range(ns.repeats):
            for variant in ns.variants:
                opts = emulator_options(headers=variant == "a", required=variant == "a")
                print(
                    f"[round {round_ + 1}/{ns.repeats}] ({variant}) {VARIANTS[variant]}: emulator {opts}",
                    flush=True,
                )
                with PioneerEmulator(latency_ms=ns.latency_ms, **opts) as emu:
                    for n in ps:
                        row = cell(emu, variant, n, work=work, batch_size=ns.batch_size, seconds=seconds)
                        rows.append({**row, "round": round_ + 1})
    md = table(rows)
    print()
    print(md)
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "limit_rpm": LIMIT_RPM, "api_profile": API_PROFILE, "limiter": LIMITER or {"rate_limit_model": "token_bucket"}, "latency_ms": ns.latency_ms, "job_seconds_at_bound": seconds,
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "wall_s": round(time.time() - began, 1),
        "rows": rows,
    }  # fmt: skip
    suffix = "-quick" if ns.quick else ""
    if API_PROFILE != "current" or LIMIT_RPM != 5000.0:
        suffix += f"-{API_PROFILE}-{LIMIT_RPM:g}"
    if LIMITER:
        suffix += f"-{LIMITER['rate_limit_model']}-{LIMITER['rate_limit_window_seconds']:g}s"
    out = HERE / f"results-{dt.date.today().isoformat()}-shared-account{suffix}.json"
    out.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"\nwritten: {out}")
    print(f"median ratio to bound per variant (all P, all rounds): "
          f"{ {v: round(statistics.median(r['ratio_to_bound'] for r in rows if r['variant'] == v), 3) for v in ns.variants} }")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
