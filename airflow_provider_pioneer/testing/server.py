"""Run the emulator: :class:`PioneerEmulator` (thread or child process) and :class:`EmulatorControl`.

Every test-side behaviour (faults, credits, counters...) is implemented once, as an admin call
over :class:`~airflow_provider_pioneer.testing.state.EmulatorState` (the registry in
``admin_calls.py``, which makes both the routes and :class:`EmulatorControl`'s methods);
:class:`EmulatorControl` is its HTTP client and :class:`PioneerEmulator` delegates to one,
so in-process and subprocess emulators behave identically.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess as sp
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import requests

from airflow_provider_pioneer.loopback import is_loopback
from airflow_provider_pioneer.testing import admin_calls as calls
from airflow_provider_pioneer.testing._deps import require_server_dependencies
from airflow_provider_pioneer.testing.admin import ADMIN_PREFIX, client_method
from airflow_provider_pioneer.testing.state import DEFAULT, EmulatorConfig

if TYPE_CHECKING:
    import uvicorn

    from airflow_provider_pioneer.testing.state import EmulatorState

__all__ = ["EmulatorControl", "PioneerEmulator", "is_loopback"]

_START_TIMEOUT = 30.0


class EmulatorControl:
    """HTTP client of an emulator's admin API (``/_emulator/...``), for tests and benchmarks.

    ``account_of_key`` arguments name an account by any of its keys (alive or revoked);
    None means the default account, the one of the bootstrap key.

    :param url: base URL of a running emulator, e.g. ``http://127.0.0.1:8090``.
    :param timeout: seconds per admin call.
    """

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()
        self._info: dict[str, Any] | None = None

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        url = f"{self.url}{ADMIN_PREFIX}/{path}"
        resp = self._session.request(method, url, json=json, timeout=self.timeout)
        if resp.status_code == 400:
            raise ValueError(resp.json().get("detail"))
        resp.raise_for_status()
        return resp.json()

    def close(self) -> None:
        self._session.close()

    def health(self) -> bool:
        """Whether ``GET /health`` answers ok right now."""
        try:
            return requests.get(f"{self.url}/health", timeout=1.0).json() == {"status": "ok"}
        except (requests.RequestException, ValueError):
            return False

    def wait_ready(self, timeout: float = _START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.health():
            if time.monotonic() > deadline:
                raise TimeoutError(f"Pioneer emulator at {self.url} did not answer /health in {timeout}s")
            time.sleep(0.02)

    def _info_value(self, name: str) -> str:
        if self._info is None:
            self._info = self._fetch_info()
        return str(self._info[name])

    @property
    def api_key(self) -> str:
        """Bootstrap key of the default account."""
        return self._info_value("api_key")

    @property
    def api_key_name(self) -> str:
        return self._info_value("api_key_name")

    @property
    def api_profile(self) -> str:
        """The API generation the emulator speaks: ``"current"`` or ``"legacy"``."""
        return self._info_value("api_profile")

    def alive_key_names(self, account_of_key: str | None = None) -> list[str]:
        return [k["name"] for k in self.alive_keys(account_of_key)]

    # The admin calls, one line each: signature, docstring and wire format are their entry's in
    # admin_calls.py (see admin.py for why they are named here and not generated).
    _fetch_info = client_method(calls.INFO)
    new_account = client_method(calls.NEW_ACCOUNT)
    create_key = client_method(calls.CREATE_KEY)
    key_is_alive = client_method(calls.KEY_IS_ALIVE)
    alive_keys = client_method(calls.ALIVE_KEYS)
    set_credits = client_method(calls.SET_CREDITS)
    set_spend_cap = client_method(calls.SET_SPEND_CAP)
    set_credit_ceiling = client_method(calls.SET_CREDIT_CEILING)
    set_latency = client_method(calls.SET_LATENCY)
    set_rate_limit = client_method(calls.SET_RATE_LIMIT)
    set_rate_limit_headers = client_method(calls.SET_RATE_LIMIT_HEADERS)
    set_key_rate_limit = client_method(calls.SET_KEY_RATE_LIMIT)
    set_key_listing = client_method(calls.SET_KEY_LISTING)
    set_key_revocation = client_method(calls.SET_KEY_REVOCATION)
    set_create_key_limit = client_method(calls.SET_CREATE_KEY_LIMIT)
    set_warmup = client_method(calls.SET_WARMUP)
    set_unservable_models = client_method(calls.SET_UNSERVABLE_MODELS)
    set_max_body_bytes = client_method(calls.SET_MAX_BODY_BYTES)
    inject = client_method(calls.INJECT)
    clear_faults = client_method(calls.CLEAR_FAULTS)
    faults = client_method(calls.FAULTS)
    counters = client_method(calls.COUNTERS)
    account_counters = client_method(calls.ACCOUNT_COUNTERS)
    reset_counters = client_method(calls.RESET_COUNTERS)
    set_lifecycle = client_method(calls.SET_LIFECYCLE)
    lifecycle_counters = client_method(calls.LIFECYCLE_COUNTERS)
    extract = client_method(calls.EXTRACT)


class PioneerEmulator(EmulatorControl):
    """A running Pioneer emulator on loopback, as a context manager.

    In-process mode serves uvicorn from a background thread; ``subprocess=True`` starts
    ``python -m airflow_provider_pioneer.testing`` instead so heavy benchmarks do not share the
    GIL with the client. Either way the test-side methods (inherited from
    :class:`EmulatorControl`) go through the admin API.

    :param host: loopback address to bind.
    :param port: port (0 picks a free one).
    :param api_profile: ``"current"`` (August 2026 API, default) or ``"legacy"`` (June 2026); see
        :class:`~airflow_provider_pioneer.testing.state.EmulatorConfig` for what each means.
    :param subprocess: run the server in a child process.

    Every other keyword is a field of :class:`~airflow_provider_pioneer.testing.state.EmulatorConfig`
    (``latency_ms``, ``per_text_latency_ms``, ``rate_limit_per_minute``, ``rate_limit_model``,
    ``rate_limit_burst``, ``rate_limit_window_seconds``, ``rate_limit_window_in_limit``,
    ``rate_limit_header_style``,
    ``rate_limit_headers``, ``key_rate_limit_per_minute``, ``create_key_limit_per_hour``,
    ``credits``, ``credits_code``, ``spend_cap_tokens``, ``credit_ceiling_tokens``,
    ``credit_ceiling_code``, ``warmup_seconds``, ``unservable_models``, ``max_body_bytes``,
    ``max_body_response``, ``seed``, ``max_text_chars``, ``bootstrap_key``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        per_text_latency_ms: float = 0.0,
        rate_limit_per_minute: float | Literal["default"] | None = DEFAULT,
        rate_limit_burst: float | None = None,
        key_rate_limit_per_minute: float | None = None,
        credits: int | None = None,
        spend_cap_tokens: int | None = None,
        seed: int = 0,
        max_text_chars: int = 10_000,
        subprocess: bool = False,
        bootstrap_key: str | None = None,
        *,
        api_profile: str = "current",
        rate_limit_headers: bool | None = None,
        create_key_limit_per_hour: int | Literal["default"] | None = DEFAULT,
        credits_code: str = "out_of_credits",
        credit_ceiling_tokens: int | None = None,
        credit_ceiling_code: str = "credit_ceiling_reached",
        warmup_seconds: float = 0.0,
        unservable_models: tuple[str, ...] | list[str] = (),
        max_body_bytes: int | None = None,
        max_body_response: str = "html",
        rate_limit_model: str = "token_bucket",
        rate_limit_window_seconds: float = 60.0,
        rate_limit_window_in_limit: bool = False,
        rate_limit_header_style: str = "x-ratelimit",
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the Pioneer emulator only binds loopback addresses, not {host!r}")
        self.host = host.strip("[]")  # "[::1]" binds as "::1"; the URL adds the brackets
        self.port = port
        self.config = EmulatorConfig(
            api_profile=api_profile,
            latency_ms=latency_ms,
            per_text_latency_ms=per_text_latency_ms,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_model=rate_limit_model,
            rate_limit_burst=rate_limit_burst,
            rate_limit_window_seconds=rate_limit_window_seconds,
            rate_limit_window_in_limit=rate_limit_window_in_limit,
            rate_limit_header_style=rate_limit_header_style,
            rate_limit_headers=rate_limit_headers,
            key_rate_limit_per_minute=key_rate_limit_per_minute,
            create_key_limit_per_hour=create_key_limit_per_hour,
            credits=credits,
            credits_code=credits_code,
            spend_cap_tokens=spend_cap_tokens,
            credit_ceiling_tokens=credit_ceiling_tokens,
            credit_ceiling_code=credit_ceiling_code,
            warmup_seconds=warmup_seconds,
            unservable_models=tuple(unservable_models),
            max_body_bytes=max_body_bytes,
            max_body_response=max_body_response,
            seed=seed,
            max_text_chars=max_text_chars,
            bootstrap_key=bootstrap_key,
        )
        self.subprocess = subprocess
        #: The live state (in-process mode only; None in subprocess mode).
        self.state: EmulatorState | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._proc: sp.Popen[bytes] | None = None
        super().__init__(self._base_url())

    def _base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None or self._proc is not None

    def start(self) -> PioneerEmulator:
        """Start serving and wait until ``/health`` answers."""
        if self.running:
            return self
        self._info = None  # a restarted emulator has a new state and bootstrap key
        require_server_dependencies()  # the `testing` extra; a clear message, not an ImportError deep inside
        try:
            if self.subprocess:
                self._start_subprocess()
            else:
                self._start_thread()
            self.url = self._base_url()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_thread(self) -> None:
        import uvicorn  # heavy: only when a server is really started

        from airflow_provider_pioneer.testing.app import create_app
        from airflow_provider_pioneer.testing.state import EmulatorState

        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self._sock = sock
        self.port = sock.getsockname()[1]
        self.state = EmulatorState(self.config)
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            access_log=False,
            http="auto",  # httptools when installed, else h11; "drop" works with both
            lifespan="off",
            timeout_graceful_shutdown=1,
            backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=f"pioneer-emulator-{self.port}",
            daemon=True,
        )
        self._thread.start()

    def _cli_args(self) -> list[str]:
        return ["--host", self.host, "--port", str(self.port), *self.config.cli_args()]

    def _start_subprocess(self) -> None:
        env = dict(os.environ)
        # The package may not be installed (a plain checkout): make the child find this copy.
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self._proc = sp.Popen(
            [sys.executable, "-m", "airflow_provider_pioneer.testing", *self._cli_args()],
            stdout=sp.PIPE,
            stdin=sp.DEVNULL,
            bufsize=0,
            env=env,
        )
        assert self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        url = key = None
        buffer = b""
        deadline = time.monotonic() + _START_TIMEOUT
        # Raw reads + select: a buffered readline could swallow the second line and then block.
        while key is None:
            if time.monotonic() > deadline:
                raise TimeoutError("emulator child did not start in time")
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"emulator child exited with {self._proc.returncode} before starting")
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"emulator child closed stdout (exit code {self._proc.wait()})")
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for raw in lines:
                line = raw.decode().strip()
                if line.startswith("Pioneer emulator on "):
                    url = line.removeprefix("Pioneer emulator on ")
                elif line.startswith("Bootstrap API key: "):
                    key = line.removeprefix("Bootstrap API key: ")
        if url is None:
            raise RuntimeError("emulator child did not print its URL")
        self.port = int(url.rsplit(":", 1)[1])

    def stop(self) -> None:
        """Shut the server down, free the port (and end the child process in subprocess mode)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except sp.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
        self._server = self._thread = self._sock = self._proc = None
        self.close()

    def __enter__(self) -> PioneerEmulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        mode = "subprocess" if self.subprocess else "thread"
        return f"PioneerEmulator({self.url!r}, {mode}, running={self.running})"
