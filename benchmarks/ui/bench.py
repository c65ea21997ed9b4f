"""Page load of the Pioneer view at real scale: 120,000 inference task instances in the metastore.

Seeds a throwaway metastore (``airflow db migrate`` in a temp AIRFLOW_HOME; SQLite, or with
``--db postgresql`` a private PostgreSQL cluster on 127.0.0.1 and a free port, started and stopped
by ``scripts/e2e.py``'s ``Postgres``, which apt-gets Debian's ``postgresql`` when it is missing)
with what Pioneer tasks leave behind: ``--tis`` inference task instances (``--shards-per-run``
mapped shards per DAG run, spread over ``--days`` days, each with its ``pioneer_summary`` XCom),
``--noise`` task instances of other operators in other DAGs, and a daily key rotation with its
Variable. Then serves Airflow's real
api-server app (the plugin mounted as in production, auth included) with uvicorn on 127.0.0.1 and
times, over real HTTP with a logged-in user's JWT:

* ``page``: ``GET /pioneer/`` (the server-rendered HTML: table, chart, rotation status);
* ``json``: ``GET /pioneer/api/view`` (the same data as JSON);
* ``page+json``: both, one after the other (what a user opening the page and a script reading it cost).

Medians over ``--repeats`` requests after 2 warm-ups. Results go to
``benchmarks/ui/results-<date>-<db>.json`` with the commit and the machine's load average.

Usage: ``.venv/bin/python benchmarks/ui/bench.py [--db sqlite|postgresql] [--tis 120000]
[--shards-per-run 4000] [--days 30] [--noise 10000] [--repeats 21]`` (PostgreSQL needs the e2e
extra's psycopg2: ``pip install -e '.[e2e]'``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _setup_home(sql_alchemy_conn: str | None = None) -> Path:
    home = Path(tempfile.mkdtemp(prefix="pioneer-ui-bench-"))
    (home / "dags").mkdir()
    plugins = home / "plugins"
    plugins.mkdir()
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sql_alchemy_conn or f"sqlite:///{home / 'airflow.db'}",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
        }
    )
    from importlib.metadata import entry_points

    # Through the entry point when this checkout is installed with it; else the plugins folder.
    if not any(ep.name == "pioneer" for ep in entry_points(group="airflow.plugins")):
        (plugins / "pioneer_view.py").write_text(
            "from airflow_provider_pioneer.ui.plugin import PioneerViewPlugin\n"
        )
    if "AIRFLOW__CORE__FERNET_KEY" not in os.environ:
        from cryptography.fernet import Fernet

        os.environ["AIRFLOW__CORE__FERNET_KEY"] = Fernet.generate_key().decode()
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], check=True, capture_output=True, env=os.environ.copy())
    return home


def _seed(tis: int, noise: int, days: int, shards_per_run: int) -> dict[str, int]:
    from airflow.utils.session import create_session

    from tests.ui_seed import Shard, seed_dags, seed_rotation, seed_runs, set_variable

    now = datetime.now(UTC)
    runs = max(1, tis // shards_per_run)
    step = timedelta(days=days) / runs
    started = time.perf_counter()
    with create_session() as session:
        seed_dags(
            session, ["bench_batch", "bench_rotation", "bench_other"], next_run=now + timedelta(hours=6)
        )
        shards = [
            Shard(
                "bench_batch",
                f"scheduled__{(now - step * r).isoformat()}",
                map_index=i,
                ended=now - step * r,
                total=250,
                succeeded=249,
                failed=1,
                tokens=10_000,
                elapsed_s=30.0,
                label=f"shard {i} · 250 texts",
                output_path=f"s3://bucket/pioneer/{r}/part-{i}.jsonl",
            )
            for r in range(runs)
            for i in range(shards_per_run)
        ][:tis]
        for chunk in range(0, len(shards), 20_000):  # one commit per 20,000 (memory)
            seed_runs(session, shards[chunk : chunk + 20_000])
        if noise:
            seed_runs(
                session,
                [
                    Shard("bench_other", f"other__{r}", task_id=f"t{i}", ended=now - step * r)
                    for r in range(max(1, noise // 10))
                    for i in range(10)
                ][:noise],
                operator="PythonOperator",
                xcoms={
                    ("bench_other", f"other__{r}", f"t{i}", -1): ("return_value", {"rows": r})
                    for r in range(max(1, noise // 10))
                    for i in range(10)
                },
            )
        created = now - timedelta(hours=20)
        set_variable(
            session,
            "pioneer_api_key",
            {
                "api_key": "pio_sk_bench_not_a_real_key",
                "name": "airflow-pioneer-bench",
                "created_at": created.isoformat(),
            },
        )
        for d in range(days):
            ended = now - timedelta(days=d, hours=20)
            seed_rotation(
                session,
                dag_id="bench_rotation",
                run_id=f"scheduled__{ended.isoformat()}",
                state="success",
                ended=ended,
                variable="pioneer_api_key",
                returned={"name": f"airflow-pioneer-{d}", "created_at": ended.isoformat(), "revoked": []},
            )
    first_day = datetime.combine((now - timedelta(days=29)).date(), datetime.min.time(), tzinfo=UTC)
    return {
        "inference_tis": len(shards),
        "shards_in_chart": sum(1 for s in shards if s.ended is not None and s.ended >= first_day),
        "other_tis": noise,
        "rotation_tis": days,
        "seed_s": round(time.perf_counter() - started, 1),
    }


def _serve() -> tuple[str, object]:
    import uvicorn
    from airflow.api_fastapi.app import create_app

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.1)
    return f"http://127.0.0.1:{port}", server


def _time(session: object, url: str, repeats: int, warmups: int = 2) -> list[float]:
    import requests

    assert isinstance(session, requests.Session)
    samples = []
    for _ in range(warmups + repeats):
        t = time.perf_counter()
        answer = session.get(url, timeout=60)
        samples.append(time.perf_counter() - t)
        answer.raise_for_status()
    return samples[warmups:]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--tis", type=int, default=120_000, help="inference task instances to seed")
    parser.add_argument("--shards-per-run", type=int, default=4_000, help="mapped shards per DAG run")
    parser.add_argument("--noise", type=int, default=10_000, help="task instances of other operators")
    parser.add_argument("--days", type=int, default=30, help="days the runs spread over")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    postgres = None
    if args.db == "postgresql":
        sys.path.insert(0, str(REPO / "scripts"))
        from e2e import Postgres  # a private cluster on 127.0.0.1 (apt-get installs it when missing)

        logs = Path(tempfile.mkdtemp(prefix="pioneer-ui-bench-pg-logs-"))
        postgres = Postgres(logs)
        postgres.start(os.environ.copy())
    try:
        return _run(args, postgres.url if postgres else None)
    finally:
        if postgres is not None:
            postgres.stop()


def _run(args: argparse.Namespace, sql_alchemy_conn: str | None) -> int:
    home = _setup_home(sql_alchemy_conn)
    seeded = _seed(args.tis, args.noise, args.days, args.shards_per_run)
    if sql_alchemy_conn:  # fresh statistics for the planner, as autovacuum would have by now
        from airflow.utils.session import create_session
        from sqlalchemy import text

        with create_session() as session:
            session.execute(text("ANALYZE"))
    print(f"seeded {seeded} in {home}", flush=True)
    load_before = os.getloadavg()

    import requests
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    base, server = _serve()
    try:
        http = requests.Session()
        http.cookies.set(
            "_token", get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        )
        cold = time.perf_counter()
        first = http.get(f"{base}/pioneer/api/view", timeout=60).json()
        # The first request sums the 30 days; later ones reuse the past days' sums (5 min).
        first_request_ms = round((time.perf_counter() - cold) * 1000, 1)
        print(f"json, first request (past days summed) {first_request_ms:.1f} ms", flush=True)
        assert first["total_runs"] == seeded["inference_tis"], first["total_runs"]
        assert "pio_sk_bench" not in json.dumps(first)
        # The SQL sums add up: 250 texts and 10,000 tokens per shard that ended in the chart's days.
        shards_in_chart = seeded["shards_in_chart"]
        assert sum(d["texts"] for d in first["daily"]) == 250 * shards_in_chart, first["daily"]
        assert sum(d["tokens"] for d in first["daily"]) == 10_000 * shards_in_chart
        results: dict[str, dict[str, float]] = {}
        page = _time(http, f"{base}/pioneer/", args.repeats)
        data = _time(http, f"{base}/pioneer/api/view", args.repeats)
        both = [p + d for p, d in zip(page, data, strict=True)]
        last_page = _time(http, f"{base}/pioneer/?page={-(-seeded['inference_tis'] // 50)}", args.repeats)
        # The worst case, once per cache lifetime (ui/runs.py): the Pioneer tasks found and the 30
        # days summed again (the server runs in this process, so its caches can be emptied).
        from airflow_provider_pioneer.ui.runs import clear_caches

        uncached = []
        for _ in range(max(3, args.repeats // 4)):
            clear_caches()
            uncached.extend(_time(http, f"{base}/pioneer/api/view", 1, warmups=0))
        for name, samples in (
            ("page", page),
            ("json", data),
            ("page+json", both),
            ("page, last page", last_page),
            ("json, nothing cached", uncached),
        ):
            results[name] = {
                "median_ms": round(statistics.median(samples) * 1000, 1),
                "p90_ms": round(sorted(samples)[int(0.9 * (len(samples) - 1))] * 1000, 1),
                "min_ms": round(min(samples) * 1000, 1),
            }
            print(
                f"{name:16s} median {results[name]['median_ms']:7.1f} ms   p90 {results[name]['p90_ms']:7.1f} ms",
                flush=True,
            )
        page_bytes = len(http.get(f"{base}/pioneer/", timeout=60).content)
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        time.sleep(0.5)
    from airflow import __version__ as airflow_version

    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--", "airflow_provider_pioneer"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    record = {
        "date": datetime.now(UTC).date().isoformat(),
        "commit": commit + ("+uncommitted" if dirty else ""),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
        "python": platform.python_version(),
        "airflow": airflow_version,
        "db": args.db,
        "shards_per_run": args.shards_per_run,
        "days": args.days,
        "seeded": seeded,
        "repeats": args.repeats,
        "page_bytes": page_bytes,
        "json_first_request_ms": first_request_ms,
        "results": results,
    }
    out = args.out or Path(__file__).with_name(f"results-{record['date']}-{args.db}.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
