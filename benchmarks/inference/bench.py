"""Benchmark PioneerInferenceOperator against a hand-written loop and the rate-limit bound.

    .venv/bin/python benchmarks/inference/bench.py            # the recorded run (about 6 minutes)
    .venv/bin/python benchmarks/inference/bench.py --quick    # a smaller smoke run (about 1 minute)

Each scenario starts the Pioneer emulator as a child process (so it does not share the
GIL with the client) with the scenario's latency and rate limit, and runs each contender
in its own child process (so peak RSS is that contender's alone):

(a) the operator (``execute`` with a minimal context, texts from a JSONL file, output to JSONL);
(b) the loop a user would write in a PythonOperator: one ``requests.post`` per text, sequential;
(c) the bound set by the rate limit: ``requests_per_minute x batch_size`` texts per minute.

The 429 share comes from the emulator's own counters. Results are printed as a markdown
table and written as JSON next to this file (``results-<date>.json``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))

MODEL = "fastino/gliner2-base-v1"
LABELS = ["person", "organization", "location"]
_FIRST = ["Alice", "Bob", "Maria", "Chen", "Fatima", "Olu", "Ivan", "Sofia", "Ravi", "Emma"]
_LAST = ["Smith", "Garcia", "Okafor", "Novak", "Tanaka", "Dubois", "Khan", "Rossi", "Berg", "Lee"]
_ORG = ["Acme Corp", "Globex", "Initech", "Umbrella Labs", "Stark Industries", "Wayne Enterprises"]
_CITY = ["Paris", "Lagos", "Tokyo", "Berlin", "Lima", "Toronto", "Mumbai", "Oslo"]


def make_input(path: Path, n: int) -> None:
    """``n`` distinct news-like records, one JSON object per line."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            a, b = _FIRST[i % 10], _LAST[(i // 10) % 10]
            org, city = _ORG[i % 6], _CITY[(i // 6) % 8]
            text = f"{a} {b} joined {org} in {city} on day {i} of the project."
            f.write(json.dumps({"id": f"doc-{i}", "text": text}) + "\n")


# -- contenders (each runs in a child process: `bench.py --child <kind> <json args>`) ------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def child_operator(args: dict[str, Any]) -> dict[str, Any]:
    os.environ["AIRFLOW_CONN_PIONEER_DEFAULT"] = json.dumps(
        {"conn_type": "pioneer", "host": args["url"], "password": args["key"]}
    )
    from airflow_provider_pioneer.operators.inference import PioneerInferenceOperator

    class _TI:
        def __init__(self) -> None:
            self.xcoms: dict[str, Any] = {}

        def xcom_push(self, key: str, value: Any) -> None:
            self.xcoms[key] = value

    op = PioneerInferenceOperator(
        task_id="bench",
        model_id=MODEL,
        input_path=args["input"],
        output_path=args["output"],
        entities=LABELS,
        batch_size=args["batch_size"],
        max_concurrency=args["max_concurrency"],
        requests_per_minute=args["rpm"],
        progress_interval=30.0,
    )
    ti = _TI()
    start = time.perf_counter()
    op.execute({"ti": ti})  # type: ignore[arg-type]
    elapsed = time.perf_counter() - start
    summary = ti.xcoms["pioneer_summary"]
    return {
        "items": summary["total"],
        "elapsed_s": elapsed,
        "peak_rss_mb": _peak_rss_mb(),
        "summary": summary,
    }


def child_hand_loop(args: dict[str, Any]) -> dict[str, Any]:
    """What a user writes by hand in a PythonOperator: one request per text, one after another."""
    import requests

    results = []
    start = time.perf_counter()
    with open(args["input"], encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n >= args["limit"]:
                break
            record = json.loads(line)
            response = requests.post(
                f"{args['url']}/inference",
                headers={"X-API-Key": args["key"]},
                json={"model_id": MODEL, "text": record["text"], "schema": {"entities": LABELS}},
                timeout=60,
            )
            response.raise_for_status()
            results.append({"id": record["id"], "result": response.json()["result"]})
    elapsed = time.perf_counter() - start
    return {"items": len(results), "elapsed_s": elapsed, "peak_rss_mb": _peak_rss_mb()}


def run_child(kind: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{kind} child failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# -- scenarios --------------------------------------------------------------------------------


def inference_429_share(counters: dict[str, Any]) -> tuple[int, float]:
    requests_ = int(counters["requests"].get("POST /inference", 0))
    rate_limited = int(counters["statuses"].get("429", 0))
    return requests_, (rate_limited / requests_ if requests_ else 0.0)


def scenario(
    name: str,
    *,
    workdir: Path,
    n_texts: int,
    latency_ms: float,
    emulator_rpm: float | None,
    rpm: float,
    batch_size: int,
    max_concurrency: int,
    repeats: int,
    hand_texts: int,
) -> dict[str, Any]:
    from airflow_provider_pioneer.testing import PioneerEmulator

    data = workdir / f"in-{n_texts}.jsonl"
    if not data.exists():
        make_input(data, n_texts)
    row: dict[str, Any] = {
        "scenario": name, "texts": n_texts, "latency_ms": latency_ms, "emulator_rpm": emulator_rpm,
        "requests_per_minute": rpm, "batch_size": batch_size, "max_concurrency": max_concurrency,
    }  # fmt: skip
    bound = rpm * batch_size / 60.0
    row["bound_items_per_s"] = bound if emulator_rpm is not None else None
    runs = []
    # Scenarios A-C measure against the June 2026 API (per-key limit, no rate-limit headers).
    with PioneerEmulator(
        latency_ms=latency_ms, rate_limit_per_minute=emulator_rpm, subprocess=True, api_profile="legacy"
    ) as emu:
        for r in range(repeats):
            emu.reset_counters()
            out = workdir / f"out-{name}-{r}.jsonl"
            for stale in workdir.glob(f"{out.name}*"):
                stale.unlink()
            res = run_child(
                "operator",
                {
                    "url": emu.url,
                    "key": emu.api_key,
                    "input": str(data),
                    "output": str(out),
                    "batch_size": batch_size,
                    "max_concurrency": max_concurrency,
                    "rpm": rpm,
                },
                timeout=3600,
            )
            sent, share = inference_429_share(emu.counters())
            with out.open(encoding="utf-8") as f:
                lines = sum(1 for _ in f)
            assert lines == n_texts, f"{name}: {lines} output records for {n_texts} inputs"
            runs.append({**res, "requests": sent, "share_429": share})
            print(f"  {name} operator run {r + 1}: {n_texts / res['elapsed_s']:.1f} items/s, "
                  f"429 share {share:.2%}, peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
        rates = [n_texts / run["elapsed_s"] for run in runs]
        row["operator_items_per_s"] = statistics.median(rates)
        row["operator_runs_items_per_s"] = rates
        row["operator_share_429"] = statistics.median(run["share_429"] for run in runs)
        row["operator_peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
        row["ratio_to_bound"] = row["operator_items_per_s"] / bound if row["bound_items_per_s"] else None
        if hand_texts:
            emu.reset_counters()
            hand = run_child(
                "hand_loop", {"url": emu.url, "key": emu.api_key, "input": str(data), "limit": hand_texts},
                timeout=3600,
            )  # fmt: skip
            _, hand_share = inference_429_share(emu.counters())
            row["hand_texts"] = hand["items"]
            row["hand_items_per_s"] = hand["items"] / hand["elapsed_s"]
            row["hand_share_429"] = hand_share
            row["speedup_vs_hand"] = row["operator_items_per_s"] / row["hand_items_per_s"]
            print(
                f"  {name} hand loop: {row['hand_items_per_s']:.1f} items/s on {hand['items']} texts",
                flush=True,
            )
    return row


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| scenario | texts | latency | emulator limit | operator items/s | bound items/s | ratio to bound "
        "| 429 share | hand loop items/s | speedup | peak RSS (MB) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lim = "off" if r["emulator_rpm"] is None else f"{r['emulator_rpm']:g} rpm"
        lines.append(
            f"| {r['scenario']} | {r['texts']:,} | {r['latency_ms']:g} ms | {lim} "
            f"| {_fmt(r['operator_items_per_s'], '.1f')} | {_fmt(r['bound_items_per_s'], '.1f')} "
            f"| {_fmt(r['ratio_to_bound'], '.1%')} | {r['operator_share_429']:.2%} "
            f"| {_fmt(r.get('hand_items_per_s'), '.1f')} | {_fmt(r.get('speedup_vs_hand'), '.0f')}"
            f"{'x' if r.get('speedup_vs_hand') else ''} | {r['operator_peak_rss_mb']:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one repeat (a smoke run)")
    p.add_argument("--repeats", type=int, default=None, help="operator runs per throughput scenario")
    p.add_argument("--big", type=int, default=None, help="texts of the large RSS run (default 1,000,000)")
    p.add_argument("--skip-big", action="store_true", help="leave out the large RSS run")
    p.add_argument(
        "--hand-texts",
        type=int,
        default=None,
        help="texts the hand loop runs in B (default all 5,000; ~4.6 min)",
    )
    p.add_argument("--child", nargs=2, metavar=("KIND", "ARGS"), help=argparse.SUPPRESS)
    ns = p.parse_args()
    if ns.child:
        kind, raw = ns.child
        fn = {"operator": child_operator, "hand_loop": child_hand_loop}[kind]
        print(json.dumps(fn(json.loads(raw))))
        return 0

    quick = ns.quick
    repeats = ns.repeats or (1 if quick else 3)
    big = ns.big or (100_000 if quick else 1_000_000)
    rows = []
    with tempfile.TemporaryDirectory(prefix="pioneer-bench-") as tmp:
        work = Path(tmp)
        print("1. rate-limit bound: 100 ms latency, 1,200 rpm limit", flush=True)
        rows.append(scenario(
            "A: at the limit", workdir=work, n_texts=5_000 if quick else 20_000, latency_ms=100,
            emulator_rpm=1200, rpm=1200, batch_size=64, max_concurrency=8, repeats=repeats, hand_texts=0,
        ))  # fmt: skip
        print("2. versus the hand-written loop: 50 ms latency, 5,000 texts", flush=True)
        rows.append(scenario(
            "B: vs hand loop", workdir=work, n_texts=5_000, latency_ms=50, emulator_rpm=1200, rpm=1200,
            batch_size=64, max_concurrency=8, repeats=repeats, hand_texts=ns.hand_texts or (200 if quick else 5_000),
        ))  # fmt: skip
        print(
            "3. memory: 10k and 1M texts from a file (emulator limit off, client at 60,000 rpm)", flush=True
        )
        sizes = [10_000] if ns.skip_big else [10_000, big]
        for n in sizes:
            rows.append(scenario(
                f"C: RSS {n:,}", workdir=work, n_texts=n, latency_ms=0, emulator_rpm=None, rpm=60_000,
                batch_size=256, max_concurrency=4, repeats=1, hand_texts=0,
            ))  # fmt: skip
    md = table(rows)
    print()
    print(md)
    meta = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rows": rows,
    }
    out = HERE / f"results-{dt.date.today().isoformat()}{'-quick' if quick else ''}.json"
    out.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"\nwritten: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
