"""Run the emulator: :class:`PioneerEmulator` (thread or child process) and :class:`EmulatorControl`.

Every test-side behaviour (faults, credits, counters...) is implemented once, as an
admin endpoint over :class:`~airflow_provider_pioneer.testing.state.EmulatorState`;
:class:`EmulatorControl` is its HTTP client and :class:`PioneerEmulator` delegates to one,
so in-process and subprocess emulators behave identically.
"""

from __future__ import annotations

import ipaddress
import os
import select
import socket
import subprocess as sp
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import requests

from airflow_provider_pioneer.testing._deps import require_server_dependencies
from airflow_provider_pioneer.testing.state import EmulatorConfig

if TYPE_CHECKING:
    import uvicorn

    from airflow_provider_pioneer.testing.state import EmulatorState

__all__ = ["EmulatorControl", "PioneerEmulator", "is_loopback"]

_START_TIMEOUT = 30.0


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name or address (the emulator refuses anything else)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
        resp = self._session.request(method, f"{self.url}/_emulator/{path}", json=json, timeout=self.timeout)
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

    @property
    def api_key(self) -> str:
        """Bootstrap key of the default account."""
        if self._info is None:
            self._info = self._call("GET", "info")
        return str(self._info["api_key"])

    @property
    def api_key_name(self) -> str:
        if self._info is None:
            self._info = self._call("GET", "info")
        return str(self._info["api_key_name"])

    def new_account(self, credits: int | None = None, spend_cap_tokens: int | None = None) -> tuple[str, str]:
        """Create an account; returns ``(key, key_name)`` of its bootstrap key."""
        out = self._call("POST", "accounts", {"credits": credits, "spend_cap_tokens": spend_cap_tokens})
        return out["key"], out["key_name"]

    def create_key(self, name: str, account_of_key: str | None = None) -> str:
        """Create a key directly (not through ``/create-api-key``, so no rate limit); returns its value."""
        return str(self._call("POST", "keys", {"name": name, "account_of_key": account_of_key})["key"])

    def key_is_alive(self, key: str) -> bool:
        return bool(self._call("POST", "keys/alive", {"key": key})["alive"])

    def alive_keys(self, account_of_key: str | None = None) -> list[dict[str, Any]]:
        """Alive keys of an account as ``{id, name, created_at}``, oldest first."""
        return list(self._call("POST", "keys/list", {"account_of_key": account_of_key})["keys"])

    def alive_key_names(self, account_of_key: str | None = None) -> list[str]:
        return [k["name"] for k in self.alive_keys(account_of_key)]

    def set_credits(self, tokens: int | None, account_of_key: str | None = None) -> None:
        """Set remaining credits in tokens (None: unlimited)."""
        self._call("PUT", "credits", {"tokens": tokens, "account_of_key": account_of_key})

    def set_spend_cap(self, tokens: int | None, account_of_key: str | None = None) -> None:
        """Set the daily spend cap in tokens (None: off); also resets today's spend."""
        self._call("PUT", "spend-cap", {"tokens": tokens, "account_of_key": account_of_key})

    def set_latency(self, latency_ms: float, per_text_latency_ms: float = 0.0) -> None:
        self._call("PUT", "latency", {"latency_ms": latency_ms, "per_text_latency_ms": per_text_latency_ms})

    def set_rate_limit(self, per_minute: float | None, burst: float | None = None) -> None:
        """Per-key limit of ``/inference`` (None disables); buckets restart full."""
        self._call("PUT", "rate-limit", {"per_minute": per_minute, "burst": burst})

    def set_key_rate_limit(self, per_minute: float | None) -> None:
        """Per-key limit of the key-management endpoints (None disables)."""
        self._call("PUT", "key-rate-limit", {"per_minute": per_minute})

    def inject(
        self,
        status: int | None = None,
        fault: str | None = None,
        rate: float | None = None,
        times: int | None = None,
        after: int = 0,
        path: str | None = "/inference",
        headers: dict[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
    ) -> str:
        """Inject a fault; see :meth:`EmulatorState.inject`. Returns the fault id."""
        payload = {
            "status": status, "fault": fault, "rate": rate, "times": times, "after": after, "path": path,
            "headers": headers, "body": body, "content_type": content_type,
        }  # fmt: skip
        return str(self._call("POST", "faults", payload)["fault_id"])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "faults")["faults"])

    def counters(self) -> dict[str, Any]:
        return dict(self._call("GET", "counters"))

    def reset_counters(self) -> None:
        self._call("POST", "reset-counters")

    def extract(
        self,
        text: str,
        labels: list[str],
        threshold: float = 0.5,
        include_confidence: bool = True,
        include_spans: bool = True,
    ) -> dict[str, Any]:
        """The per-text ``result`` the server returns for this text and these labels."""
        body = {
            "text": text, "labels": list(labels), "threshold": threshold,
            "include_confidence": include_confidence, "include_spans": include_spans,
        }  # fmt: skip
        return dict(self._call("POST", "extract", body))


class PioneerEmulator(EmulatorControl):
    """A running Pioneer emulator on loopback, as a context manager.

    In-process mode serves uvicorn from a background thread; ``subprocess=True`` starts
    ``python -m airflow_provider_pioneer.testing`` instead so heavy benchmarks do not share the
    GIL with the client. Either way the test-side methods (inherited from
    :class:`EmulatorControl`) go through the admin API.

    :param host: loopback address to bind.
    :param port: port (0 picks a free one).
    :param latency_ms: fixed wait of each ``/inference`` call.
    :param per_text_latency_ms: extra wait per text.
    :param rate_limit_per_minute: per-key ``/inference`` limit (None disables).
    :param rate_limit_burst: bucket capacity (None: one second's worth).
    :param key_rate_limit_per_minute: per-key limit of the key endpoints (None disables).
    :param credits: tokens of the default account (None: unlimited).
    :param spend_cap_tokens: daily spend cap of the default account (None: off).
    :param seed: seed for fault ``rate``.
    :param max_text_chars: longer texts get 422.
    :param subprocess: run the server in a child process.
    :param bootstrap_key: fixed bootstrap key value (random when None).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        per_text_latency_ms: float = 0.0,
        rate_limit_per_minute: float | None = 1200,
        rate_limit_burst: float | None = None,
        key_rate_limit_per_minute: float | None = None,
        credits: int | None = None,
        spend_cap_tokens: int | None = None,
        seed: int = 0,
        max_text_chars: int = 10_000,
        subprocess: bool = False,
        bootstrap_key: str | None = None,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"the Pioneer emulator only binds loopback addresses, not {host!r}")
        self.host = host
        self.port = port
        self.config = EmulatorConfig(
            latency_ms=latency_ms,
            per_text_latency_ms=per_text_latency_ms,
            rate_limit_per_minute=rate_limit_per_minute,
            rate_limit_burst=rate_limit_burst,
            key_rate_limit_per_minute=key_rate_limit_per_minute,
            credits=credits,
            spend_cap_tokens=spend_cap_tokens,
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
        c = self.config

        def opt(value: float | None) -> str:
            return "none" if value is None else str(value)

        args = [
            "--host", self.host, "--port", str(self.port), "--latency-ms", str(c.latency_ms),
            "--per-text-latency-ms", str(c.per_text_latency_ms),
            "--rate-limit-per-minute", opt(c.rate_limit_per_minute), "--rate-limit-burst", opt(c.rate_limit_burst),
            "--key-rate-limit-per-minute", opt(c.key_rate_limit_per_minute), "--credits", opt(c.credits),
            "--spend-cap-tokens", opt(c.spend_cap_tokens), "--seed", str(c.seed),
            "--max-text-chars", str(c.max_text_chars),
        ]  # fmt: skip
        if c.bootstrap_key:
            args += ["--bootstrap-key", c.bootstrap_key]
        return args

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
