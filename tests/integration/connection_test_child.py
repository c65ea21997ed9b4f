"""Press the connection Test button the way Airflow 3.3's UI does, through the real REST API in-process.

    python tests/integration/connection_test_child.py <connection_id> [<typed key> ...]

Runs in the Airflow home its environment names (AIRFLOW_HOME etc. set by the caller). Reads the
connection as the UI's list does (``GET /api/v2/connections/{id}``: password masked), builds the
body the UI's Test button posts (``port: Number(null)`` = 0, empty strings for empty fields, the
extra as a JSON string), posts it to ``/api/v2/connections/test`` and prints
``{"status_code": ..., "body": ...}`` as one JSON line. Then, for each typed key, the same body
carrying that key instead of the masked one (a user who typed a key in the form), one line each.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def ui_test_body(conn: dict[str, object]) -> dict[str, object]:
    """What the connection list's Test button posts (Airflow 3.3.2's UI, ``Number(connection.port)``)."""
    port = conn.get("port")
    return {
        "connection_id": conn["connection_id"],
        "conn_type": conn["conn_type"],
        "description": conn.get("description") or "",
        "extra": conn.get("extra") or "{}",
        "host": conn.get("host") or "",
        "login": conn.get("login") or "",
        "password": conn.get("password") or "",
        "port": int(port) if port else 0,  # Number(null) === 0 in the UI
        "schema": conn.get("schema") or "",
    }


def main(conn_id: str, typed_keys: list[str]) -> int:
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app(), base_url="http://127.0.0.1")
    got = client.get(f"/api/v2/connections/{conn_id}")
    if got.status_code != 200:
        print(json.dumps({"status_code": got.status_code, "body": got.text}))
        return 0
    body = ui_test_body(got.json())
    for password in [body["password"], *typed_keys]:
        answer = client.post("/api/v2/connections/test", json={**body, "password": password})
        print(
            json.dumps({"status_code": answer.status_code, "body": answer.json(), "sent_port": body["port"]})
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2:]))
