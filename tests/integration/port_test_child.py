"""Press the connection list's Test button as Airflow 3.3's UI does, signed in with a JWT (any 3.x).

    python tests/integration/port_test_child.py <connection_id>

Runs in the Airflow home its environment names, with SimpleAuthManager user ``admin`` configured
by the caller. Posts the body of ``connection_test_child.ui_test_body`` (``"port": 0`` for an empty
port) and prints ``{"status_code", "body", "sent_port"}`` as one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.connection_test_child import ui_test_body


def main(conn_id: str) -> int:
    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    client = TestClient(create_app(), base_url="http://127.0.0.1")
    token = get_auth_manager().generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))
    headers = {"Authorization": f"Bearer {token}"}
    got = client.get(f"/api/v2/connections/{conn_id}", headers=headers)
    got.raise_for_status()
    body = ui_test_body(got.json())
    answer = client.post("/api/v2/connections/test", json=body, headers=headers)
    print(json.dumps({"status_code": answer.status_code, "body": answer.json(), "sent_port": body["port"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
