"""Page load of the Pioneer view with 10,000 inference task instances in the metastore.

Seeds a throwaway SQLite metastore (``airflow db migrate`` in a temp AIRFLOW_HOME) with what
Pioneer tasks leave behind: ``--tis`` inference task instances (shards of 4 per DAG run, spread over
``--days`` days, each with its ``pioneer_summary`` XCom), ``--noise`` task instances of other
operators in other DAGs, and a daily key rotation with its Variable. Then serves Airflow's real
api-server app (the plugin mounted as in production, auth included) with uvicorn on 127.0.0.1 and
times, over real HTTP with a logged-in user's JWT:

* ``page``: ``GET /pioneer/`` (the server-rendered HTML: table, chart, rotation status);
* ``json``: ``GET /pioneer/api/view`` (the same data as JSON);
* ``page+json``: both, one after the other (what a user opening the page and a script reading it cost).

Medians over ``--repeats`` requests after 2 warm-ups. Results go to ``benchmarks/ui/results-<date>.json``.

Usage: ``.venv/bin/python benchmarks/ui/bench.py [--tis 10000] [--noise 10000] [--repeats 21]``
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


def _setup_home() -> Path:
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
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
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


def _seed(tis: int, noise: int, days: int) -> dict[str, int]:
    from airflow.utils.session import create_session

    from tests.ui_seed import Shard, seed_dags, seed_rotation, seed_runs, set_variable

    now = datetime.now(UTC)
    shards_per_run = 4
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
                total=2_500,
                succeeded=2_490,
                failed=10,
                tokens=100_000,
                elapsed_s=120.0,
                label=f"shard {i} · 2,500 texts",
                output_path=f"s3://bucket/pioneer/{r}/part-{i}.jsonl",
            )
            for r in range(runs)
            for i in range(shards_per_run)
        ][:tis]
        seed_runs(session, shards)
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
    return {
        "inference_tis": len(shards),
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


def _time(session: object, url: str, repeats: int) -> list[float]:
    import requests

    assert isinstance(session, requests.Session)
    samples = []
    for _ in range(2 + repeats):
        t = time.perf_counter()
        answer = session.get(url, timeout=60)
        samples.append(time.perf_counter() - t)
        answer.raise_for_status()
    return samples[2:]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tis", type=int, default=10_000, help="inference task instances to seed")
    parser.add_argument("--noise", type=int, default=10_000, help="task instances of other operators")
    parser.add_argument("--days", type=int, default=60, help="days the runs spread over")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    home = _setup_home()
    seeded = _seed(args.tis, args.noise, args.days)
    print(f"seeded {seeded} in {home}", flush=True)

    import requests
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    base, server = _serve()
    try:
        http = requests.Session()
        http.cookies.set(
            "_token", get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
        )
        first = http.get(f"{base}/pioneer/api/view", timeout=60).json()
        assert first["total_runs"] == seeded["inference_tis"], first["total_runs"]
        assert "pio_sk_bench" not in json.dumps(first)
        results: dict[str, dict[str, float]] = {}
        page = _time(http, f"{base}/pioneer/", args.repeats)
        data = _time(http, f"{base}/pioneer/api/view", args.repeats)
        both = [p + d for p, d in zip(page, data, strict=True)]
        last_page = _time(http, f"{base}/pioneer/?page={-(-seeded['inference_tis'] // 50)}", args.repeats)
        for name, samples in (
            ("page", page),
            ("json", data),
            ("page+json", both),
            ("page, last page", last_page),
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

    record = {
        "date": datetime.now(UTC).date().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}",
        "python": platform.python_version(),
        "airflow": airflow_version,
        "db": "sqlite",
        "seeded": seeded,
        "repeats": args.repeats,
        "page_bytes": page_bytes,
        "results": results,
    }
    out = args.out or Path(__file__).with_name(f"results-{record['date']}.json")
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out}")
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
