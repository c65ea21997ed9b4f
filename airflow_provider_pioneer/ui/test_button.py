"""Lets the connection list's Test button work for a Pioneer connection stored without a port.

Airflow 3.3's connection list posts ``"port": 0`` for a connection whose port is empty
(``Number(null)`` in the UI), and the api-server then refuses the test as "a different endpoint"
(400 Bad Request, before any hook runs) because the stored port is ``NULL``. Every Pioneer
connection made in the UI's own Add Connection form is stored so (the form hides the port). The
Pioneer hook ignores the port, so for ``conn_type == "pioneer"`` only, this root middleware drops
an empty or zero ``port`` from the test request: the endpoint then compares no port and tests the
stored connection. Every other request passes through untouched (one string comparison).
"""

from __future__ import annotations

import json
from typing import Any

from airflow_provider_pioneer import safe_json

TEST_PATH_SUFFIX = "/api/v2/connections/test"
#: How large a test request body this middleware reads to rewrite (the UI's is well under 10 KB).
MAX_BODY = 1_000_000


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
