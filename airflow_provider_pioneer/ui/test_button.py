"""Lets the connection list's Test button work for a Pioneer connection stored without a port.

Airflow's connection list posts ``"port": 0`` for a connection whose port is empty
(``Number(null)`` in the UI), and from 3.3.1 the api-server refuses the test as "a different endpoint"
(400 Bad Request, before any hook runs) because the stored port is ``NULL``. Every Pioneer
connection made in the UI's own Add Connection form is stored so (the form hides the port). The
Pioneer hook ignores the port, so for ``conn_type == "pioneer"`` only, this root middleware drops
an empty or zero ``port`` from the test request: the endpoint then compares no port and tests the
stored connection. Every other request passes through untouched (one string comparison).

Only the Airflow releases that refuse the request get the middleware (:func:`root_middlewares`).
What was verified, by reading each release's wheel (``apache-airflow-core``, ``routes/public/
connections.py`` and the UI bundle's Test button, which posts ``port: Number(connection.port)`` in
all of them):

- 3.1.x to 3.3.0 do not compare the test's host or port with the stored connection: port 0 is
  merged into the stored connection and the hook ignores it. Nothing to fix.
- 3.3.1 added that comparison (``test_body.port != existing_conn.port``: 0 is not ``None``), and
  3.3.2 (apache/airflow#72348) treats a blank ``""`` as unset but still not 0: both answer 400.
- apache/airflow#73298 (merged September 2026) normalises 0 like ``""``. No release up to 3.3.2,
  the newest published, carries it. When one does, set :data:`FIXED_IN` to it (after reading its
  ``_same_endpoint``; ``tests/integration/test_test_button_port.py`` fails until the gate matches
  the installed Airflow); the module goes once the lowest supported Airflow is that release.
"""

from __future__ import annotations

import json
import re
from typing import Any

from airflow_provider_pioneer import safe_json

TEST_PATH_SUFFIX = "/api/v2/connections/test"
#: How large a test request body this middleware reads to rewrite (the UI's is well under 10 KB).
MAX_BODY = 1_000_000
#: The first Airflow release whose api-server refuses a test with ``"port": 0`` (see the docstring).
BROKEN_SINCE = (3, 3, 1)
#: The first release carrying apache/airflow#73298; ``None`` while no published release does.
FIXED_IN: tuple[int, int, int] | None = None


def needs_port_fix(airflow_version: str) -> bool:
    """Whether this Airflow's api-server refuses the Test button's ``"port": 0`` (see the docstring).

    :param airflow_version: ``airflow.__version__``; a pre-release (``3.3.1rc1``) counts as its release.
    """
    found = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", airflow_version)
    if found is None:  # not a version we know: keep the fix, which is harmless where not needed
        return True
    release = (int(found[1]), int(found[2]), int(found[3] or 0))
    return release >= BROKEN_SINCE and (FIXED_IN is None or release < FIXED_IN)


def root_middlewares(airflow_version: str) -> list[dict[str, Any]]:
    """The plugin's ``fastapi_root_middlewares``: the port fix on the releases that need it, else none.

    :param airflow_version: ``airflow.__version__``.
    """
    if not needs_port_fix(airflow_version):
        return []
    return [
        {
            "middleware": PioneerTestButtonMiddleware,
            "args": [],
            "kwargs": {},
            "name": "Pioneer Test button: no port",
        }
    ]


def without_empty_port(body: bytes) -> bytes:
    """The request body with an empty or zero ``port`` dropped when it tests a Pioneer connection."""
    try:
        data = safe_json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or data.get("conn_type") != "pioneer" or "port" not in data:
        return body
    if data["port"] not in (0, "0", "", None):
        return body
    del data["port"]
    return json.dumps(data).encode()


class PioneerTestButtonMiddleware:
    """ASGI middleware (a plugin root middleware): see the module docstring.

    :param app: the api-server's ASGI app.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if (
            scope.get("type") != "http"
            or scope.get("method") != "POST"
            or not str(scope.get("path", "")).endswith(TEST_PATH_SUFFIX)
        ):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: let the app see it
                await self.app(scope, _replay([message], receive), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if not message.get("more_body", False) or size > MAX_BODY:
                more = message.get("more_body", False)
                break
        body = b"".join(chunks)
        if more:  # too large to be the UI's test request: pass it on as it came
            await self.app(
                scope, _replay([{"type": "http.request", "body": body, "more_body": True}], receive), send
            )
            return
        fixed = without_empty_port(body)
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(fixed)).encode()))
        await self.app(
            {**scope, "headers": headers},
            _replay([{"type": "http.request", "body": fixed, "more_body": False}], receive),
            send,
        )


def _replay(messages: list[dict[str, Any]], receive: Any) -> Any:
    """A ``receive`` that hands out ``messages`` first, then whatever the client sends next."""
    pending = list(messages)

    async def replay() -> Any:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay
