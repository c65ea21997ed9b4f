"""Hostile servers and bad configuration, over real HTTP to the emulator (issue 8 items 2, 3, 8)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.redaction import FRAGMENT
from airflow_provider_pioneer.testing import PioneerEmulator

MODEL = "fastino/gliner2-base-v1"
SCHEMA = {"entities": ["organization"]}


def no_sleep(_: float) -> None:
    return None


def make_client(emu: PioneerEmulator, **kw: Any) -> PioneerClient:
    kw.setdefault("sleep", no_sleep)
    return PioneerClient(emu.url, kw.pop("api_key", emu.api_key), **kw)


def pieces(key: str) -> set[str]:
    random_part = key.split("_sk_", 1)[-1]
    return {random_part[i : i + FRAGMENT] for i in range(len(random_part) - FRAGMENT + 1)}


def set_conn(monkeypatch: pytest.MonkeyPatch, conn: dict[str, Any]) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps({"conn_type": "pioneer", **conn}))


# -- item 2: a server that echoes the key ---------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "envelope"),
    [(401, "detail"), (422, "message"), (500, "html"), (503, "text"), (402, "billing")],
)
def test_an_echoed_key_leaves_no_piece_in_errors_or_logs(
    pioneer_emulator: PioneerEmulator, caplog: pytest.LogCaptureFixture, status: int, envelope: str
) -> None:
    key = pioneer_emulator.api_key
    for size, offset in [(10, 0), (10, 5), (400, 255), (400, 280), (1024, 290), (10_240, 9_000)]:
        filler = ("x" * size)[:offset] + key + ("y" * size)[offset:]
        body: Any
        content_type = None
        if envelope == "detail":
            body = {"detail": filler}
        elif envelope == "message":
            body = {"error": "bad", "message": filler}
        elif envelope == "billing":
            body = {"code": "out_of_credits", "message": filler, "resolution_url": f"https://x.io/{key}"}
        elif envelope == "html":
            body, content_type = f"<html><title>{filler}</title><body>{filler}</body></html>", "text/html"
        else:
            body, content_type = filler, "text/plain"
        pioneer_emulator.clear_faults()
        pioneer_emulator.inject(status=status, body=body, content_type=content_type)
        client = make_client(pioneer_emulator, max_retries=1)
        with caplog.at_level(logging.DEBUG), pytest.raises(ex.PioneerError) as info:
            client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
        err = info.value
        chain = []
        seen: BaseException | None = err
        while seen is not None:
            chain.append(f"{seen!s} {seen!r}")
            seen = seen.__cause__ or seen.__context__
        shown = " ".join(
            [
                *chain,
                json.dumps(err.detail, default=str),
                str(getattr(err, "resolution_url", None)),
                caplog.text,
            ]
        )
        leaked = [p for p in pieces(key) if p in shown]
        assert not leaked, (status, envelope, size, offset, leaked[:3])


# -- item 3: a trickled body cannot hold a call past its deadline ----------------------------------


@pytest.mark.parametrize("status", [None, 500])
def test_a_trickled_body_is_cut_at_the_deadline(
    pioneer_emulator: PioneerEmulator, status: int | None
) -> None:
    # One byte a second: each read returns well within the 5 s read timeout, so only the call's
    # 2 s deadline can stop it (the old client read on for the whole body).
    pioneer_emulator.inject(fault="trickle", status=status, trickle_bytes=1, trickle_interval=1.0)
    client = make_client(pioneer_emulator, timeout=5, deadline=2, max_retries=3)
    started = time.monotonic()
    with pytest.raises(ex.PioneerConnectionError, match="deadline"):
        client.infer(["Apple makes phones."] * 5, schema=SCHEMA, model_id=MODEL)
    took = time.monotonic() - started
    assert took <= 2 + 5  # the deadline plus at most one read timeout
    assert pioneer_emulator.counters()["requests"]["POST /inference"] == 1  # no retry past the deadline


class HeaderTrickler:
    """A hostile HTTP server on loopback: it answers every request with a status line, then one
    header byte every ``interval`` seconds, forever (each read well within any read timeout)."""

    def __init__(self, interval: float = 0.2) -> None:
        import socket
        import threading

        self.interval = interval
        self.requests = 0
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        import threading

        self._server.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except OSError:
                continue
            self.requests += 1
            threading.Thread(target=self._trickle, args=(conn,), daemon=True).start()

    def _trickle(self, conn: Any) -> None:
        with conn:
            try:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                # Gives up after 15 s (then the headers end with no body), so a client without the
                # deadline fails the test instead of hanging it.
                until = time.monotonic() + 15
                while not self._stop.is_set() and time.monotonic() < until:
                    conn.sendall(b"z")
                    time.sleep(self.interval)
            except OSError:
                return  # the client hung up

    def __enter__(self) -> HeaderTrickler:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self._server.close()


def test_trickled_headers_are_cut_at_the_deadline() -> None:
    """The status line and headers are read inside http.client, a byte at a time within the read
    timeout: only the deadline's watchdog stops them (the old client waited forever)."""
    with HeaderTrickler() as server:
        client = PioneerClient(
            server.url, "pio_sk_" + "k" * 40, timeout=5, deadline=2, max_retries=3, sleep=no_sleep
        )
        started = time.monotonic()
        with pytest.raises(ex.PioneerConnectionError, match="deadline"):
            client.infer(["Apple makes phones."], schema=SCHEMA, model_id=MODEL)
        took = time.monotonic() - started
        assert took <= 2 + 5  # the deadline plus at most one read timeout
        assert server.requests == 1  # no retry past the deadline
        # The client still works for the next call (the cut connection is not reused).
        with pytest.raises(ex.PioneerConnectionError, match="deadline"):
            client.infer(["Apple makes phones."], schema=SCHEMA, model_id=MODEL)
        assert server.requests == 2


@pytest.mark.parametrize("envelope", ["detail", "message", "html", "text"])
def test_the_emulators_echo_fault_leaves_no_piece_of_the_key(
    pioneer_emulator: PioneerEmulator, caplog: pytest.LogCaptureFixture, envelope: str
) -> None:
    key = pioneer_emulator.api_key
    sizes = [10, 100, 1000, 10_240] if envelope == "text" else [100, 1000, 10_240]
    for size in sizes:
        for offset in sorted({0, 1, size // 3, 250, 280, 297, 300, size - len(key) // 2, size - 1}):
            if offset >= size:
                continue
            pioneer_emulator.clear_faults()
            pioneer_emulator.inject(
                fault="echo_key", status=500, envelope=envelope, body_size=size, offset=offset
            )
            client = make_client(pioneer_emulator, max_retries=1)
            with caplog.at_level(logging.DEBUG), pytest.raises(ex.PioneerServerError) as info:
                client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
            shown = f"{info.value!s} {info.value!r} {json.dumps(info.value.detail)} {caplog.text}"
            leaked = [p for p in pieces(key) if p in shown]
            assert not leaked, (envelope, size, offset, leaked[:3])


def shown_by(err: BaseException, caplog: pytest.LogCaptureFixture) -> str:
    """Everything an error shows: its chain's str and repr, its detail, code, scope, and the log."""
    parts = [caplog.text]
    seen: BaseException | None = err
    while seen is not None:
        parts += [str(seen), repr(seen)]
        for attr in ("detail", "code", "scope", "resolution_url"):
            parts.append(json.dumps(getattr(seen, attr, None), default=str))
        seen = seen.__cause__ or seen.__context__
    return " ".join(parts)


@pytest.mark.parametrize("status", [401, 429, 500])
def test_a_key_hidden_in_json_escapes_or_headers_leaves_no_piece(
    pioneer_emulator: PioneerEmulator, caplog: pytest.LogCaptureFixture, status: int
) -> None:
    """The raw body's redaction cannot see "\u0070io_sk_..." : the strings are redacted again once
    parsed, and the rate-limit headers that errors keep (code, scope) are redacted too."""
    key = pioneer_emulator.api_key
    escaped = "".join(f"\\u{ord(c):04x}" for c in key)
    body = '{"detail": {"msg": "bad key ' + escaped + '", "' + escaped + '": ["' + escaped[:60] + '"]}}'
    pioneer_emulator.inject(
        status=status, body=body, content_type="application/json",
        headers={"X-RateLimit-Code": key, "X-RateLimit-Scope": key, "Retry-After": "0"},
    )  # fmt: skip
    client = make_client(pioneer_emulator, max_retries=0)
    with caplog.at_level(logging.DEBUG), pytest.raises(ex.PioneerError) as info:
        client.infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert json.loads(body)["detail"]["msg"].endswith(key)  # the body really carries the key
    shown = shown_by(info.value, caplog)
    assert "bad key ***" in shown
    assert not [p for p in pieces(key) if p in shown]


@pytest.mark.parametrize("status", [200, 500])
def test_json_nested_past_the_recursion_limit_is_a_clear_error(
    pioneer_emulator: PioneerEmulator, status: int
) -> None:
    deep = "[" * 100_000 + "]" * 100_000  # 200 KB that make json.loads raise RecursionError
    pioneer_emulator.inject(status=status, body=deep, content_type="application/json")
    client = make_client(pioneer_emulator, max_retries=0)
    expected = ex.PioneerResponseError if status == 200 else ex.PioneerServerError
    with pytest.raises(expected) as info:
        client.infer(["Apple."], schema=SCHEMA, model_id=MODEL)
    assert len(str(info.value)) < 400  # a short message, not the body or a traceback


def bearer_conn(emu: PioneerEmulator, scheme: str | None) -> dict[str, Any]:
    extra = {"auth_scheme": scheme} if scheme else {}
    return {"host": emu.url, "password": emu.api_key, "extra": extra}


def test_the_key_can_go_as_a_bearer_token(
    pioneer_emulator: PioneerEmulator,
    pioneer_emulator_legacy: PioneerEmulator,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    set_conn(monkeypatch, bearer_conn(pioneer_emulator, "bearer"))
    ok, message = PioneerHook().test_connection()
    assert ok, message
    # The legacy server knows only X-API-Key: a Bearer call fails there, the default succeeds.
    set_conn(monkeypatch, bearer_conn(pioneer_emulator_legacy, "bearer"))
    with pytest.raises(ex.PioneerAuthError):
        PioneerHook().list_api_keys()
    set_conn(monkeypatch, bearer_conn(pioneer_emulator_legacy, None))
    assert PioneerHook().test_connection()[0] is True
    set_conn(monkeypatch, bearer_conn(pioneer_emulator, "basic"))
    with pytest.raises(ex.PioneerConfigurationError, match="auth_scheme"):
        PioneerHook().client  # noqa: B018


# -- item 8: configuration errors read as configuration errors ---------------------------------------


def test_a_key_with_a_trailing_newline_or_spaces_is_stripped(
    pioneer_emulator: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_conn(monkeypatch, {"host": pioneer_emulator.url, "password": f"  {pioneer_emulator.api_key}\n"})
    ok, message = PioneerHook().test_connection()
    assert ok, message
    assert pioneer_emulator.counters()["statuses"].get("401", 0) == 0


@pytest.mark.parametrize("bad", ["pio_sk_ké", "pio_sk_a b", "pio_sk_\u200bzero", "pio_sk_\x00"])
def test_a_key_no_header_can_carry_is_refused_clearly(
    pioneer_emulator: PioneerEmulator, monkeypatch: pytest.MonkeyPatch, bad: str
) -> None:
    set_conn(monkeypatch, {"host": pioneer_emulator.url, "password": bad})
    with pytest.raises(ex.PioneerConfigurationError, match="Paste the key again") as info:
        PioneerHook().infer("Apple.", schema=SCHEMA, model_id=MODEL)
    assert bad not in str(info.value) and "connection 'pioneer_default'" in str(info.value)
    assert pioneer_emulator.counters()["requests"] == {}  # refused before any request
    ok, message = PioneerHook().test_connection()
    assert not ok and "Paste the key again" in message


def test_a_loopback_host_without_a_scheme_is_plain_http(
    pioneer_emulator: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    host_port = pioneer_emulator.url.removeprefix("http://")
    for host in (host_port, host_port.replace("127.0.0.1", "localhost")):
        set_conn(monkeypatch, {"host": host, "password": pioneer_emulator.api_key})
        hook = PioneerHook()
        assert hook.base_url == f"http://{host}"
        assert hook.test_connection()[0] is True


@pytest.mark.parametrize(
    ("host", "says"),
    [
        ("https://[::1", "cannot be parsed"),
        ("https://api.pioneer.ai:99999", "cannot be parsed"),
        ("https://api.pioneer.ai/?region=eu", "query or fragment"),
        ("https://api.pioneer.ai/#frag", "query or fragment"),
        ("ftp://api.pioneer.ai", "not an http(s) URL"),
    ],
)
def test_a_host_that_cannot_be_used_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, host: str, says: str
) -> None:
    set_conn(monkeypatch, {"host": host, "password": "pio_sk_x"})
    with pytest.raises(ex.PioneerConfigurationError, match="connection's host") as info:
        PioneerHook().client  # noqa: B018
    assert says in str(info.value)


def test_a_base_path_is_kept_for_every_route(pioneer_emulator: PioneerEmulator) -> None:
    # A base URL with a path (a gateway, or a /v1 host) prefixes every route; nothing is guessed.
    client = make_client(pioneer_emulator, api_key=pioneer_emulator.api_key)
    client.base_url = f"{pioneer_emulator.url}/v9"
    with pytest.raises(ex.PioneerNotFoundError):
        client.list_api_keys()
    assert pioneer_emulator.counters()["requests"] == {"GET /v9/list-api-keys": 1}


# -- create-api-key is never retried -----------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
def test_key_creation_is_sent_once_whatever_the_error(pioneer_emulator: PioneerEmulator, status: int) -> None:
    pioneer_emulator.inject(status=status, path="/create-api-key", headers={"Retry-After": "1"})
    client = make_client(pioneer_emulator, max_retries=5)
    with pytest.raises(ex.PioneerError):
        client.create_api_key("nightly")
    assert pioneer_emulator.counters()["requests"]["POST /create-api-key"] == 1


def test_a_result_without_entities_is_malformed_only_when_entities_were_asked_for(
    pioneer_emulator: PioneerEmulator,
) -> None:
    """The result's shape follows the schema: ``{}`` answers no entity request, a classification
    result answers a classification-only schema."""
    answer = {"type": "encoder", "inference_id": "i", "result": [{"classifications": {"topic": "tech"}}]}
    client = make_client(pioneer_emulator, max_retries=0)
    pioneer_emulator.inject(status=200, body=answer, times=1)
    doc = client.infer(["Apple."], schema={"classifications": [{"task": "topic"}]}, model_id=MODEL)
    assert doc["result"] == answer["result"]
    for schema in (SCHEMA, ["organization"]):  # the deprecated flat list asks for entities too
        pioneer_emulator.inject(status=200, body=answer, times=1)
        with pytest.raises(ex.PioneerResponseError, match="result 0 of 1 has no 'entities'"):
            client.infer(["Apple."], schema=schema, model_id=MODEL)


def test_the_deadline_watchdog_cuts_only_the_late_calls_of_many_threads(
    pioneer_emulator: PioneerEmulator,
) -> None:
    """Eight threads at once: four wait on a server trickling headers, four call the emulator
    many times on one client. The watchdog cuts every late call at its deadline and never a
    healthy connection (a cut meant for a finished call must not hit its reused socket)."""
    from concurrent.futures import ThreadPoolExecutor

    healthy = make_client(pioneer_emulator, deadline=2, max_retries=0, pool_size=4)
    with HeaderTrickler() as server:
        late = PioneerClient(
            server.url, "pio_sk_" + "k" * 40, timeout=5, deadline=2, max_retries=0, sleep=no_sleep
        )

        def slow(_: int) -> str:
            with pytest.raises(ex.PioneerConnectionError, match="deadline") as info:
                late.infer(["Apple."], schema=SCHEMA, model_id=MODEL)
            return info.value.message

        def quick(_: int) -> int:
            ends = time.monotonic() + 3  # outlives the late calls' deadlines
            calls = 0
            while time.monotonic() < ends:
                assert (
                    len(healthy.infer(["Apple makes phones."], schema=SCHEMA, model_id=MODEL)["result"]) == 1
                )
                calls += 1
            return calls

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:  # all eight at once
            slow_calls = [pool.submit(slow, i) for i in range(4)]
            quick_calls = [pool.submit(quick, i) for i in range(4)]
            cut = [f.result() for f in slow_calls]
            done = [f.result() for f in quick_calls]
        assert len(cut) == 4 and all(n > 0 for n in done)
        assert time.monotonic() - started < 2 + 5 + 3 + 5
        assert server.requests == 4
