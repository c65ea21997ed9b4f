"""PioneerHook: from an Airflow Connection (and Variable) to an authenticated :class:`PioneerClient`.

Airflow glue only: connection fields and extras, the rotated-key Variable,
secret masking, the UI form and the Test button. HTTP, retries and errors are
the client's; batching is the operators'.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from airflow.sdk import BaseHook
from airflow.sdk.log import mask_secret

from airflow_provider_pioneer.exceptions import (
    PioneerConfigurationError,
    PioneerConnectionError,
    PioneerError,
)
from airflow_provider_pioneer.hooks._options import ConnectionOptions
from airflow_provider_pioneer.rotation.variable import parse_stored_key, recorded_key_name
from airflow_provider_pioneer.urls import DEFAULT_BASE_URL, normalize_host

if TYPE_CHECKING:
    from airflow_provider_pioneer.client import PioneerClient
    from airflow_provider_pioneer.lifecycle.aio import ConnectionSettings
    from airflow_provider_pioneer.lifecycle.api import LifecycleClient
    from airflow_provider_pioneer.pacing import Pacer
    from airflow_provider_pioneer.rotation.store import KeyStore

__all__ = ["PioneerHook", "parse_stored_key", "recorded_key_name"]

#: Longest the Test button waits, seconds (connect and answer alike); it never retries.
TEST_TIMEOUT = 5.0


class PioneerHook(BaseHook):
    """Interact with the Pioneer API (GLiNER entity extraction, docs.pioneer.ai).

    The connection (type ``pioneer``) holds the base URL in *host* (empty means
    ``https://api.pioneer.ai``) and the API key in *password*. Extras:
    ``key_variable`` (a Variable holding the current key, written by
    :class:`~airflow_provider_pioneer.operators.key_rotation.PioneerKeyRotationOperator`;
    wins over the password), ``timeout`` (seconds per request, 60), ``max_retries`` (5),
    ``deadline`` (seconds per call, retries included, 600), ``key_name`` (the key's
    Pioneer-side name, for the first rotation) and ``allow_insecure_http``.

    :param pioneer_conn_id: the connection to use.
    :param requests_per_minute: the most requests per minute to send (a ceiling); ``None`` adapts to the
        account's limit by itself (rate-limit headers, 429s; see :class:`~airflow_provider_pioneer.pacing.Pacer`).
    :param pool_size: pooled HTTP connections; size it to the threads that share the hook.
    :param timeout: override the connection's per-request timeout, seconds.
    :param max_retries: override the connection's retry budget.
    :param pacer: the pacing (and retry waits) the client uses; default: one at ``requests_per_minute``.
    :param warmup_timeout: seconds in all to wait for warming models (HTTP 425), default 600.
    """

    conn_name_attr = "pioneer_conn_id"
    default_conn_name = "pioneer_default"
    conn_type = "pioneer"
    hook_name = "Pioneer"

    def __init__(
        self,
        pioneer_conn_id: str = default_conn_name,
        *,
        requests_per_minute: float | None = None,
        pool_size: int = 10,
        timeout: float | None = None,
        max_retries: int | None = None,
        pacer: Pacer | None = None,
        warmup_timeout: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pioneer_conn_id = pioneer_conn_id
        self.requests_per_minute = requests_per_minute
        self.pool_size = pool_size
        self._timeout = timeout
        self._max_retries = max_retries
        self._pacer = pacer
        self._warmup_timeout = warmup_timeout

    def __repr__(self) -> str:
        return f"PioneerHook(pioneer_conn_id={self.pioneer_conn_id!r})"

    # -- UI form (Airflow 2 style; Airflow 3 reads conn-fields from get_provider_info) --------------

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Relabel the password as the API key and hide the fields Pioneer does not use."""
        from airflow_provider_pioneer.get_provider_info import UI_FIELD_BEHAVIOUR

        return UI_FIELD_BEHAVIOUR

    # -- connection -> client ---------------------------------------------------------------------

    @cached_property
    def _extras(self) -> dict[str, Any]:
        extras = self._connection.extra_dejson or {}
        if not isinstance(extras, dict):
            # Airflow hands valid JSON over as it is (malformed JSON it turns into {} itself).
            kind = {list: "an array", str: "a string", bool: "a boolean"}.get(type(extras), "a number")
            raise PioneerConfigurationError(
                f"Connection {self.pioneer_conn_id!r}: its extra must be a JSON object, as "
                f'{{"key_variable": "pioneer_api_key"}}, not {kind}. Fix it in the connection.'
            )
        self._check_key_store(extras)
        return extras

    def _check_key_store(self, extras: dict[str, Any]) -> None:
        """Refuse an unknown ``key_store`` extra as the extras are read: every task that reads its key
        would fail on it, a hook that never does (a client for a given key) only later, or never."""
        from airflow_provider_pioneer.rotation.store import kinds, unknown_kind

        unknown = unknown_kind(extras.get("key_store"))
        if unknown is not None:
            raise PioneerConfigurationError(
                f"Connection {self.pioneer_conn_id!r}: unknown key_store {unknown!r}; use one of "
                f"{', '.join(kinds())} in the connection's extra key_store, or remove it (the key is "
                "then read from the Variable key_variable names)."
            )

    @cached_property
    def _options(self) -> ConnectionOptions:
        """The transport extras, parsed once for the client and the triggers' settings alike."""
        return ConnectionOptions.parse(self._extras, self.pioneer_conn_id)

    @cached_property
    def _connection(self) -> Any:
        return self.get_connection(self.pioneer_conn_id)

    @property
    def key_variable(self) -> str | None:
        """Name of the Variable that holds the current (rotated) key, if the connection names one.

        The extra is ``key_variable``: a name without ``api_key`` in it, so that Airflow's masker,
        which hides the values of sensitive-looking extras, leaves the Variable's name readable.
        """
        name = self._extras.get("key_variable")
        return str(name) if name else None

    @property
    def key_name(self) -> str | None:
        """Pioneer-side name of the connection's own key (extra ``key_name``), used by the first rotation."""
        name = self._extras.get("key_name")
        return str(name) if name else None

    @property
    def base_url(self) -> str:
        """The API root this connection points at."""
        conn = self._connection
        host = (conn.host or "").strip()
        if not host:
            return DEFAULT_BASE_URL
        # A URI-style connection (pioneer://:KEY@host:port) or a bare "localhost:8090" gives no
        # scheme: loopback is the emulator (plain http); anything else is https unless the
        # schema field says otherwise.
        url = normalize_host(host, conn.schema)
        try:
            parts = urlsplit(url)
            has_port = parts.port is not None
        except ValueError:
            return url  # the client refuses it, naming the field
        # The UI stores 0 (or nothing) for an empty port field.
        if conn.port and not has_port:
            parts = parts._replace(netloc=f"{parts.netloc}:{conn.port}")
        return urlunsplit(parts).rstrip("/")

    @cached_property
    def key_store(self) -> KeyStore | None:
        """Where this connection's current key lives (extras ``key_store``, ``key_variable``), or ``None``.

        :raises PioneerConfigurationError: the extras name an unknown kind of store.
        """
        return self.open_key_store()

    def open_key_store(
        self, kind: str | None = None, *, name: str | None = None, log: Any = None
    ) -> KeyStore | None:
        """A key store by this connection's extras (see :func:`~airflow_provider_pioneer.rotation.store.open_store`).

        :raises PioneerConfigurationError: an unknown kind of store.
        """
        from airflow_provider_pioneer.rotation.store import open_store

        try:
            return open_store(
                kind, self._extras, conn_id=self.pioneer_conn_id, name=name, log=log or self.log
            )
        except ValueError as exc:
            raise PioneerConfigurationError(str(exc)) from None

    def read_variable_key(self, *, fresh: bool = False) -> str | None:
        """The key in the connection's key store (the ``key_variable`` Variable) now, or ``None``
        (none named, missing or unreadable).

        :param fresh: read past Airflow's secrets cache (after a 401).
        :raises PioneerConfigurationError: the store holds a value without a usable key (malformed
            JSON, Airflow's masked placeholder...): falling back to the password then would hide
            the problem behind a 401 from a key that may be revoked.
        """
        store = self.key_store
        if store is None:
            return None
        try:
            stored = store.read(fresh=fresh)
        except Exception:  # a secrets backend outage must not hide the password fallback
            self.log.warning(
                "Could not read %s for the Pioneer API key; using the connection's.", store.label
            )
            return None
        message = store.explain(stored)
        if message:
            raise PioneerConfigurationError(message)
        if stored.api_key:
            # The stores mask what they read; masked here too, so a store that forgets cannot leak
            # the key a 401 re-read brings (it reaches the client without passing get_api_key).
            mask_secret(stored.api_key)
        return stored.api_key

    def _reread_variable_key(self) -> str | None:
        """After a 401: the store's key as stored now, past Airflow's secrets cache."""
        return self.read_variable_key(fresh=True)

    def get_api_key(self) -> str:
        """The key to use now: the Variable's (when ``key_variable`` names one that exists), else the password.

        Surrounding whitespace (a pasted newline) is stripped; a key that no HTTP header can carry is
        refused with a message naming the connection, never the key.
        """
        from airflow_provider_pioneer.client import check_api_key

        key = self.read_variable_key()
        where = self.key_store.label if key and self.key_store else f"connection {self.pioneer_conn_id!r}"
        key = key or (self._connection.password or "")
        if key:
            mask_secret(key)
        key = check_api_key(key, where)
        mask_secret(key)
        return key

    @cached_property
    def client(self) -> PioneerClient:
        """The authenticated client, built once per hook."""
        return self.client_for_key(
            self.get_api_key(), refresh_key=self._reread_variable_key if self.key_store else None
        )

    def client_for_key(
        self,
        api_key: str,
        *,
        max_retries: int | None = None,
        refresh_key: Callable[[], str | None] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
    ) -> PioneerClient:
        """A new client with this connection's settings but the given key (key rotation tests a fresh key).

        :param api_key: the key to send; masked from logs here.
        :param max_retries: override the retry budget (0 for a call that must never be repeated).
        :param refresh_key: see :class:`PioneerClient`.
        :param timeout: override the per-request timeout, seconds.
        :param deadline: override the per-call deadline, seconds.
        """
        # requests and the client load here, in the task, never when a DAG file is parsed.
        from airflow_provider_pioneer.client import PioneerClient
        from airflow_provider_pioneer.pacing import Pacer

        mask_secret(api_key)
        mask_secret(api_key.strip())
        options = self._options
        if max_retries is None:
            max_retries = self._max_retries if self._max_retries is not None else options.max_retries
        warmup = self._warmup_timeout if self._warmup_timeout is not None else options.warmup_timeout
        return PioneerClient(
            self.base_url,
            api_key,
            timeout=self._request_timeout() if timeout is None else timeout,
            max_retries=5 if max_retries is None else max_retries,
            deadline=self._call_deadline() if deadline is None else deadline,
            pool_size=self.pool_size,
            allow_insecure_http=options.allow_insecure_http,
            pacer=self._pacer or Pacer(self.requests_per_minute),
            refresh_key=refresh_key,
            auth_scheme=options.auth_scheme,
            warmup_timeout=600.0 if warmup is None else warmup,
        )

    def _request_timeout(self) -> float:
        """Seconds per request: the hook's argument, else the extra, else 60."""
        if self._timeout is not None:
            return self._timeout
        return 60.0 if self._options.timeout is None else self._options.timeout

    def _call_deadline(self) -> float:
        """Seconds per call, retries included: the extra, else 600."""
        return 600.0 if self._options.deadline is None else self._options.deadline

    def get_conn(self) -> PioneerClient:
        """The authenticated :class:`PioneerClient`."""
        return self.client

    # -- API methods (thin: the client does the work) -----------------------------------------------

    def infer(
        self,
        texts: str | list[str],
        schema: dict[str, Any] | list[Any] | None = None,
        model_id: str = "",
        **options: Any,
    ) -> dict[str, Any]:
        """Run entity extraction; see :meth:`PioneerClient.infer`."""
        return self.client.infer(texts, schema=schema, model_id=model_id, **options)

    def create_api_key(self, name: str) -> dict[str, Any]:
        """Create a key called ``name``; its value is masked in logs from this moment on."""
        record = self.client.create_api_key(name)
        mask_secret(record["key"])
        return record

    def list_api_keys(self) -> list[dict[str, Any]]:
        """The account's key records (never the key values), every page of the listing."""
        return self.client.list_api_keys()

    def delete_api_key(self, name: str, key_id: str | None = None) -> dict[str, Any]:
        """Revoke the key called ``name`` (immediate and permanent); ``key_id`` if the server refuses names."""
        return self.client.delete_api_key(name, key_id)

    def list_base_models(self) -> list[dict[str, Any]]:
        """The model catalogue (``GET /v1/models``, every page)."""
        return self.client.list_base_models()

    @cached_property
    def lifecycle(self) -> LifecycleClient:
        """Datasets, training jobs and evaluations (see :class:`~airflow_provider_pioneer.lifecycle.api.LifecycleClient`)."""
        from airflow_provider_pioneer.lifecycle.api import LifecycleClient

        return LifecycleClient(self.client)

    def connection_settings(self) -> ConnectionSettings:
        """Base URL, key (masked), auth scheme and timeout: what a trigger's async reader needs.

        Called inside the trigger (never in the task that defers), so no key is ever part of a
        trigger's serialised kwargs.
        """
        from airflow_provider_pioneer.lifecycle.aio import ConnectionSettings
        from airflow_provider_pioneer.urls import validate_base_url

        options = self._options
        base_url = validate_base_url(self.base_url, allow_insecure_http=options.allow_insecure_http)
        return ConnectionSettings(
            base_url=base_url,
            api_key=self.get_api_key(),
            auth_scheme=options.auth_scheme,
            timeout=self._request_timeout(),
            deadline=self._call_deadline(),
        )

    def test_connection(self) -> tuple[bool, str]:
        """Back the UI's Test button: one page of the account's keys (free, no side effects).

        Cheap on purpose: it runs in an api-server thread while a user waits, so it makes one short
        attempt (:data:`TEST_TIMEOUT` seconds at most, or the connection's shorter ``timeout``) and
        never retries: an unreachable host answers in seconds, not after the tasks' retry budget.
        """
        timeout = TEST_TIMEOUT
        try:
            key = self.get_api_key()
            extra_timeout = self._options.timeout
            timeout = TEST_TIMEOUT if extra_timeout is None else min(TEST_TIMEOUT, extra_timeout)
            # The deadline only backs the timeout up (a trickled answer): a second past it.
            client = self.client_for_key(key, max_retries=0, timeout=timeout, deadline=timeout + 1.0)
            try:
                keys, more = client.list_api_keys_page()
            finally:
                client.close()
        except PioneerConnectionError as exc:
            return False, (
                f"{exc.message} (The Test button waits at most {timeout:g} s, whatever the timeout extra, "
                "and does not retry; tasks use the connection's own timeout and retries.)"
            )
        except PioneerError as exc:
            return False, exc.message
        except Exception as exc:
            return False, f"{type(exc).__name__}: could not test the Pioneer connection."
        count = f"{len(keys)}+" if more else str(len(keys))
        return True, f"Connected to {self.base_url}; the key is valid ({count} keys on the account)."
