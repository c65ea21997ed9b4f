"""The connection Test button is cheap: one short attempt, no retries (it holds an api-server thread
while a user waits). Counted on raw sockets: a port nobody listens on, a server that hangs up at
once, and one that accepts and never answers."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from airflow_provider_pioneer.hooks import pioneer as hook_module
from airflow_provider_pioneer.hooks.pioneer import PioneerHook

KEY = "pio_sk_" + "7" * 32
# A Test button that retries would sit here for minutes (6 attempts of the tasks' 60 s timeout).
pytestmark = pytest.mark.timeout(30)


class RawServer:
    """A loopback TCP server that counts connections and either hangs up or never answers."""

    def __init__(self, answer: str) -> None:
        self.answer = answer  # "hang_up" or "silent"
        self.connections = 0
        self._held: list[socket.socket] = []
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            if self.answer == "hang_up":
                conn.close()
            else:
                self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for conn in self._held:
            conn.close()
        self._sock.close()


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


def point_at(monkeypatch: pytest.MonkeyPatch, port: int, **extra: object) -> None:
    conn = {"conn_type": "pioneer", "host": f"http://127.0.0.1:{port}", "password": KEY, "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(conn))


def timed_test() -> tuple[bool, str, float]:
    started = time.monotonic()
    ok, message = PioneerHook().test_connection()
    return ok, message, time.monotonic() - started


def test_an_unreachable_port_answers_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nobody listens there now: connection refused
    point_at(monkeypatch, port)  # the connection's defaults: 60 s timeout, 5 retries
    ok, message, elapsed = timed_test()
    assert ok is False
    assert f"could not reach http://127.0.0.1:{port}" in message and "attempts" not in message
    assert "does not retry" in message
    assert elapsed < 2.0  # was 14.5 s: six attempts with backoff
    assert KEY not in message


@pytest.mark.parametrize("raw_server", ["hang_up"], indirect=True)
def test_a_server_that_hangs_up_is_tried_once(monkeypatch: pytest.MonkeyPatch, raw_server: RawServer) -> None:
    point_at(monkeypatch, raw_server.port)
    ok, message, elapsed = timed_test()
    assert ok is False and "could not reach" in message
    assert raw_server.connections == 1
    assert elapsed < 2.0


@pytest.mark.parametrize("raw_server", ["silent"], indirect=True)
def test_a_server_that_never_answers_is_given_one_short_attempt(
    monkeypatch: pytest.MonkeyPatch, raw_server: RawServer
) -> None:
    # The connection keeps the tasks' 60 s timeout; the button waits TEST_TIMEOUT at most (made
    # 1 s here to keep the suite fast; 5 s as shipped).
    monkeypatch.setattr(hook_module, "TEST_TIMEOUT", 1.0, raising=False)
    point_at(monkeypatch, raw_server.port, timeout=60)
    ok, message, elapsed = timed_test()
    assert ok is False and "timed out after 1 s" in message and "does not retry" in message
    assert raw_server.connections == 1
    assert elapsed < 3.0
