"""Import cost of the provider's modules, which a DAG file using them pays on every parse.

Each sample is a fresh interpreter that first imports ``airflow.sdk`` (bare: it is lazy) or Airflow's
authoring API (``from airflow.sdk import BaseHook, BaseOperator``: what any provider pays) and then
times, in-process, only the import of our module on top of it. Medians over ``--runs`` interpreters; the variants are
interleaved so machine noise hits them alike. Also reports how many modules each import adds and
whether the HTTP stack (requests) or the emulator (fastapi) was pulled in.

Usage: ``.venv/bin/python benchmarks/import_time/bench.py [--runs 21]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

BARE = "import airflow.sdk"
BASE = "import airflow.sdk; from airflow.sdk import BaseHook, BaseOperator"
HOOK = "import airflow_provider_pioneer.hooks.pioneer"
OPERATORS = (
    "import airflow_provider_pioneer.operators.inference, airflow_provider_pioneer.operators.key_rotation"
)
#: label -> (what is already imported, what is timed)
TARGETS = {
    "hook over bare sdk": (BARE, HOOK),
    "hook over BaseHook": (BASE, HOOK),
    "operators over BaseHook": (BASE, OPERATORS),
    "requests (for scale)": (BASE, "import requests"),
}
PROBE = """
import sys, time, json
{base}
before = set(sys.modules)
t = time.perf_counter()
{code}
ms = (time.perf_counter() - t) * 1000
added = set(sys.modules) - before
print(json.dumps({{"ms": ms, "modules": len(added), "requests": "requests" in sys.modules,
                  "fastapi": "fastapi" in sys.modules}}))
"""


def sample(base: str, code: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(base=base, code=code)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=21)
    args = parser.parse_args()
    for base, code in TARGETS.values():  # warm the OS file cache
        sample(base, code)
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in TARGETS}
    for _ in range(args.runs):
        for name, (base, code) in TARGETS.items():
            runs[name].append(sample(base, code))
    print(f"bare = `{BARE}`; BaseHook = `{BASE}`; median of {args.runs} fresh interpreters")
    print(f"  {'import':24s} {'ms':>7s} {'modules':>8s}  requests  fastapi")
    for name, samples in runs.items():
        ms = statistics.median(s["ms"] for s in samples)
        last = samples[-1]
        print(
            f"  {name:24s} {ms:7.1f} {int(last['modules']):8d}  {last['requests']!s:8s}  {last['fastapi']!s}"
        )


if __name__ == "__main__":
    main()
