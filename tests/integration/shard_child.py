"""One shard of a batch-inference job in its own process, for the shared-account pacing test.

    python tests/integration/shard_child.py

It imports the client and the batch runner once, prints ``READY``, then runs one job per line of
JSON read on stdin (``{"url", "key", "texts", "batch_size", "max_concurrency"}``) the way
``PioneerInferenceOperator.execute()`` sends a shard: one client, a ``StoppablePacer`` with the
default (adaptive) pacing, ``BatchRunner`` with the operator's concurrency and window. It answers
each job with one line ``RESULT <json>``: ``{"ok", "error", "results", "seconds", "rate_limited"}``
(anything else the process prints goes to stderr). SIGUSR1 stops the job at hand.
Airflow's file I/O is left out: the pacing under test is the client's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
# Answers go to the real stdout; everything else written to fd 1 (the provider's log lines,
# whatever logger holds a reference to it) goes to stderr, so no line breaks the protocol.
ANSWERS = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)

from airflow_provider_pioneer.batching import runner  # noqa: E402
from airflow_provider_pioneer.batching.inputs import Item  # noqa: E402
from airflow_provider_pioneer.client import PioneerClient  # noqa: E402

MODEL = "fastino/gliner2-base-v1"


#: The running job's stop event: SIGUSR1 sets it (the test's timeout), as the operator's on_kill would.
_STOP = threading.Event()


def run(job: dict[str, Any]) -> dict[str, Any]:
    stop = _STOP
    stop.clear()
    concurrency = int(job["max_concurrency"])
    client = PioneerClient(
        job["url"], job["key"], pool_size=concurrency, pacer=runner.StoppablePacer(None, stop), timeout=30
    )

    def infer(texts: list[str]) -> tuple[list[Any], int]:
        doc = client.infer(texts, schema={"entities": ["organization"]}, model_id=MODEL)
        return list(doc["result"]), int(doc.get("token_usage") or 0)

    items = [Item(i, i, f"Acme shard text {i}") for i in range(int(job["texts"]))]
    batch_runner = runner.BatchRunner(infer, max_concurrency=concurrency, window=2 * concurrency, stop=stop)
    started = time.monotonic()
    results, error = 0, None
    try:
        for batch in batch_runner.run(runner.batches(items, int(job["batch_size"]))):
            results += sum(1 for r in batch.records if "result" in r)
    except (runner.FatalStop, runner.RunStopped) as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        client.close()
    return {
        "ok": error is None and results == len(items),
        "error": error,
        "results": results,
        "seconds": time.monotonic() - started,
        "rate_limited": client.stats.snapshot()["rate_limited"],
        "pacer": getattr(client.pacer, "describe", lambda: "?")(),  # the pacer is being redesigned
    }


def main() -> int:
    signal.signal(signal.SIGUSR1, lambda signum, frame: _STOP.set())
    print("READY", file=ANSWERS, flush=True)
    for line in sys.stdin:
        if line.strip():
            print(f"RESULT {json.dumps(run(json.loads(line)))}", file=ANSWERS, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
