"""What a DAG file pays to import the provider: no web server stack, no HTTP stack at parse time."""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = """
import json, sys
# What any provider pays: Airflow's authoring API. Airflow 3.1's airflow.sdk loads FastAPI itself.
from airflow.sdk import BaseHook, BaseOperator, BaseOperatorLink
baseline = {m for m in ("fastapi", "uvicorn", "starlette", "requests") if m in sys.modules}
import airflow_provider_pioneer.hooks.pioneer
import airflow_provider_pioneer.operators.inference
import airflow_provider_pioneer.operators.key_rotation
import airflow_provider_pioneer.operators.datasets
import airflow_provider_pioneer.operators.training
import airflow_provider_pioneer.operators.evaluation
import airflow_provider_pioneer.links
print(json.dumps({m: m in sys.modules and m not in baseline for m in ("fastapi", "uvicorn", "starlette", "requests")}))
"""


def test_operators_and_hook_import_neither_fastapi_nor_requests() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert loaded["fastapi"] is False and loaded["uvicorn"] is False and loaded["starlette"] is False
    assert loaded["requests"] is False  # the HTTP stack loads when a task builds a client


def test_the_emulator_package_is_import_light_too() -> None:
    probe = "import sys, airflow_provider_pioneer.testing; print('fastapi' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip().splitlines()[-1] == "False"
