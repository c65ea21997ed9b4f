"""Run the emulator: :class:`PioneerEmulator` (thread or child process) and :class:`EmulatorControl`.

Every test-side behaviour (faults, credits, counters...) is implemented once, as an
admin endpoint over :class:`~airflow_provider_pioneer.testing.state.EmulatorState`;
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
from airflow_provider_pioneer.testing._deps import require_server_dependencies
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

    @property
    def api_profile(self) -> str:
        """The API generation the emulator speaks: ``"current"`` or ``"legacy"``."""
        if self._info is None:
            self._info = self._call("GET", "info")
        return str(self._info["api_profile"])

    def new_account(
        self,
        credits: int | None = None,
        spend_cap_tokens: int | None = None,
        credit_ceiling_tokens: int | None = None,
    ) -> tuple[str, str]:
        """Create an account; returns ``(key, key_name)`` of its bootstrap key.

        ``spend_cap_tokens`` (daily, 429) is legacy only; ``credit_ceiling_tokens`` (monthly, 403) current only.
        """
        body = {
            "credits": credits,
            "spend_cap_tokens": spend_cap_tokens,
            "credit_ceiling_tokens": credit_ceiling_tokens,
        }
        out = self._call("POST", "accounts", body)
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

    def set_credits(
        self, tokens: int | None, account_of_key: str | None = None, code: str | None = None
    ) -> None:
        """Set remaining credits in tokens (None: unlimited).

        :param code: current profile: the 402's ``code``, ``"out_of_credits"`` (default) or
            ``"direct_model_requires_credits"``.
        """
        self._call("PUT", "credits", {"tokens": tokens, "account_of_key": account_of_key, "code": code})

    def set_spend_cap(self, tokens: int | None, account_of_key: str | None = None) -> None:
        """Legacy profile: the daily spend cap in tokens (None: off), answered 429 +
        ``X-RateLimit-Reason: daily_spend_cap_exceeded``; also resets today's spend."""
        self._call("PUT", "spend-cap", {"tokens": tokens, "account_of_key": account_of_key})

    def set_credit_ceiling(
        self, tokens: int | None, code: str = "credit_ceiling_reached", account_of_key: str | None = None
    ) -> None:
        """Current profile: the monthly credit ceiling in tokens (None: off), answered 403
        ``{code, message, resolution_url}`` with ``code`` ``"credit_ceiling_reached"`` or
        ``"card_required"``; also resets this month's spend."""
        self._call(
            "PUT", "credit-ceiling", {"tokens": tokens, "code": code, "account_of_key": account_of_key}
        )

    def set_latency(self, latency_ms: float, per_text_latency_ms: float = 0.0) -> None:
        self._call("PUT", "latency", {"latency_ms": latency_ms, "per_text_latency_ms": per_text_latency_ms})

    def set_rate_limit(
        self,
        per_minute: float | None,
        burst: float | None = None,
        *,
        model: str | None = None,
        window_seconds: float | None = None,
        window_in_limit: bool | None = None,
    ) -> None:
        """Limit of ``/inference``, per key (legacy) or per account (current); None disables.
        Limits start afresh; ``burst`` is the token bucket's capacity (None: one second's worth).
        ``model``, ``window_seconds``, ``window_in_limit``: the ``rate_limit_*`` settings of
        :class:`~airflow_provider_pioneer.testing.state.EmulatorConfig` (None keeps the current)."""
        body = {"model": model, "window_seconds": window_seconds, "window_in_limit": window_in_limit}
        self._call("PUT", "rate-limit", {"per_minute": per_minute, "burst": burst, **body})

    def set_rate_limit_headers(self, enabled: bool) -> None:
        """Send or hide ``X-RateLimit-Limit/-Remaining/-Reset`` (e.g. to pace from Retry-After only)."""
        self._call("PUT", "rate-limit-headers", {"enabled": enabled})

    def set_key_rate_limit(self, per_minute: float | None) -> None:
        """Per-key limit of the key-management endpoints (None disables)."""
        self._call("PUT", "key-rate-limit", {"per_minute": per_minute})

    def set_key_listing(self, style: str | None, page_size: int | None = None) -> None:
        """Page ``GET /list-api-keys`` in Pioneer's ``"cursor"`` style (``after_id``; ``has_more``,
        ``last_id``) or ``"offset"`` style (``offset``; ``total``, ``has_more``), ``page_size`` keys a
        page; ``None``: one page (API.md)."""
        self._call("PUT", "key-listing", {"style": style, "page_size": page_size})

    def set_key_revocation(self, accepts: str) -> None:
        """What ``DELETE /delete-api-key`` accepts: ``"any"`` (default), only ``"name"`` or only
        ``"key_id"``; the other field alone answers 422."""
        self._call("PUT", "key-revocation", {"accepts": accepts})

    def set_create_key_limit(self, per_hour: int | None) -> None:
        """``POST /create-api-key`` calls per account and rolling hour (None: unlimited)."""
        self._call("PUT", "create-key-limit", {"per_hour": per_hour})

    def set_warmup(self, seconds: float) -> None:
        """Current profile: a model answers 425 + ``Retry-After`` for ``seconds`` after its first
        use; every model becomes cold again."""
        self._call("PUT", "warmup", {"seconds": seconds})

    def set_unservable_models(self, models: list[str]) -> None:
        """Current profile: these model ids answer 409 (ids starting with ``job_unservable`` always do)."""
        self._call("PUT", "unservable-models", {"models": list(models)})

    def set_max_body_bytes(self, limit: int | None, response: str = "html") -> None:
        """Answer request bodies over ``limit`` bytes with a proxy's 413 before the API sees them
        (nothing billed); ``response`` is ``"html"`` (nginx's page) or ``"json"``. None: no limit."""
        self._call("PUT", "max-body-bytes", {"limit": limit, "response": response})

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
        trickle_bytes: int = 1,
        trickle_interval: float = 1.0,
        envelope: str = "detail",
        body_size: int | None = None,
        offset: int = 0,
        indices: list[int] | None = None,
        bad: str = "null",
    ) -> str:
        """Inject a fault; see :meth:`EmulatorState.inject`. Returns the fault id."""
        payload = {
            "status": status, "fault": fault, "rate": rate, "times": times, "after": after, "path": path,
            "headers": headers, "body": body, "content_type": content_type, "trickle_bytes": trickle_bytes,
            "trickle_interval": trickle_interval, "envelope": envelope, "body_size": body_size,
            "offset": offset, "indices": indices, "bad": bad,
        }  # fmt: skip
        return str(self._call("POST", "faults", payload)["fault_id"])

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def faults(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "faults")["faults"])

    def counters(self) -> dict[str, Any]:
        """Counters of the whole emulator: ``requests`` and ``statuses`` by name, ``text_counts``
        (texts billed, per text), ``tokens_billed``, ``rate_limited`` (429s of the ``/inference``
        limiter), ``inference_rpm_peak`` / ``inference_rpm_peak_admitted`` (most ``/inference``
        requests one account sent / got past the limiter in any 60 s), ``keys_created_last_hour``
        (``/create-api-key`` calls), ``faults_fired``, ``max_concurrent_inference``,
        ``inference_in_flight`` (``/inference`` requests being answered right now)..."""
        return dict(self._call("GET", "counters"))

    def account_counters(self, account_of_key: str | None = None) -> dict[str, Any]:
        """One account's counters: ``inference_requests``, ``inference_rpm_peak``,
        ``inference_rpm_peak_admitted``, ``rate_limited``, ``keys_created_last_hour``, ``credits``,
        ``spent_today``, ``spent_this_month``."""
        return dict(self._call("POST", "account-counters", {"account_of_key": account_of_key}))

    def reset_counters(self) -> None:
        self._call("POST", "reset-counters")

    def set_lifecycle(self, **settings: Any) -> dict[str, Any]:
        """Change the model-lifecycle simulation (durations, doc variants, faults); returns every setting.

        See :class:`~airflow_provider_pioneer.testing.lifecycle.LifecycleSettings` for the names
        (``queue_s``, ``epoch_s``, ``status_style``, ``fail_next_jobs``, ``running_status``, ``eval_f1``...).
        """
        return dict(self._call("PUT", "lifecycle", settings))

    def lifecycle_counters(self) -> dict[str, Any]:
        """Lifecycle counters: ``jobs_submitted``, ``idempotent_replays``, ``jobs_stopped``,
        ``presigned_puts``, ``presigned_puts_with_key``, ``evaluations_submitted``, ``submits_rate_limited``...
        and ``jobs`` (each job id's status now)."""
        return dict(self._call("GET", "lifecycle/counters"))

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
    :param api_profile: ``"current"`` (August 2026 API, default) or ``"legacy"`` (June 2026); see
        :class:`~airflow_provider_pioneer.testing.state.EmulatorConfig` for what each means.
    :param subprocess: run the server in a child process.

    Every other keyword is a field of :class:`~airflow_provider_pioneer.testing.state.EmulatorConfig`
    (``latency_ms``, ``per_text_latency_ms``, ``rate_limit_per_minute``, ``rate_limit_model``,
    ``rate_limit_burst``, ``rate_limit_window_seconds``, ``rate_limit_window_in_limit``,
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
