"""Request the Pioneer view through Airflow's real api-server app, in-process, as several callers.

    python tests/integration/pioneer_view_child.py <plugins_folder>

Runs in the Airflow home its environment names, with the auth manager the caller configured
(tests.restricted_auth). Loads the plugin the way Airflow does: through the ``airflow.plugins``
entry point when this checkout is installed with it, else from a one-line file in the plugins
folder (an editable install made before the entry point existed). Prints one JSON line per request:
``{"who", "path", "status_code", "body"}``, then one with the UI's plugin listing.
"""

from __future__ import annotations

import json
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

PLUGIN = "airflow_provider_pioneer.ui.plugin:PioneerViewPlugin"


def main(plugins_folder: str) -> int:
    if not any(ep.value == PLUGIN for ep in entry_points(group="airflow.plugins")):
        Path(plugins_folder).mkdir(parents=True, exist_ok=True)
        (Path(plugins_folder) / "pioneer_view.py").write_text(
            "from airflow_provider_pioneer.ui.plugin import PioneerViewPlugin  # noqa: F401\n"
        )
    os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"] = plugins_folder

    from airflow.api_fastapi.app import create_app, get_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from fastapi.testclient import TestClient

    client = TestClient(create_app(), base_url="http://127.0.0.1")
    manager = get_auth_manager()
    tokens = {
        "alice": manager.generate_jwt(SimpleAuthManagerUser(username="alice", role="admin")),
        "bob": manager.generate_jwt(SimpleAuthManagerUser(username="bob", role="viewer")),
    }
    # Admins each denied one entity (tests.restricted_auth's PIONEER_TEST_DENY).
    for name in os.environ.get("PIONEER_VIEW_DENIED_USERS", "").split(","):
        if name:
            tokens[name] = manager.generate_jwt(SimpleAuthManagerUser(username=name, role="admin"))
    calls = [
        ("anonymous", {}, {}),
        ("forged", {"Authorization": "Bearer not-a-jwt"}, {}),
        ("alice-cookie", {}, {"_token": tokens["alice"]}),
        ("bob-bearer", {"Authorization": f"Bearer {tokens['bob']}"}, {}),
    ] + [
        (name, {"Authorization": f"Bearer {token}"}, {})
        for name, token in tokens.items()
        if name not in ("alice", "bob")
    ]
    for who, headers, cookies in calls:
        for path in ("/pioneer/", "/pioneer/api/view"):
            client.cookies.clear()
            for name, value in cookies.items():
                client.cookies.set(name, value)
            answer = client.get(path, headers=headers)
            print(
                json.dumps({"who": who, "path": path, "status_code": answer.status_code, "body": answer.text})
            )
    client.cookies.clear()
    plugins = client.get("/api/v2/plugins", headers={"Authorization": f"Bearer {tokens['alice']}"})
    print(
        json.dumps(
            {
                "who": "alice",
                "path": "/api/v2/plugins",
                "status_code": plugins.status_code,
                "body": plugins.text,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
