"""What the lifecycle integration tests share: fast emulator timings, a dataset row, a client."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.lifecycle.api import LifecycleClient
from airflow_provider_pioneer.testing import PioneerEmulator

ROW = {"text": "Ada Lovelace worked in London.", "entities": [["Ada Lovelace", "person"]]}
FAST = {"queue_s": 0.05, "epoch_s": 0.05, "normalize_s": 0.1, "dataset_process_s": 0.05, "eval_s": 0.1}


def lifecycle_client(emu: PioneerEmulator) -> Iterator[LifecycleClient]:
    """A lifecycle client of ``emu`` with quick retries, closed afterwards (a fixture's body)."""
    client = PioneerClient(emu.url, emu.api_key, max_retries=2, backoff_base=0.01)
    yield LifecycleClient(client)
    client.close()


def ready_dataset(api: LifecycleClient, name: str = "ds") -> None:
    """Upload one row as dataset ``name`` and wait until the emulator has processed it."""
    upload = api.request_upload(name)
    api.put_presigned(upload["upload_url"], (json.dumps(ROW) + "\n").encode())
    api.process_upload(upload["dataset_id"])
    deadline = time.monotonic() + 10
    while api.get_dataset(name)["status"] != "ready":
        assert time.monotonic() < deadline
        time.sleep(0.05)
