"""Every call of the emulator's admin API (``/_emulator/...``): the one registry (``admin.py``).

Each :class:`~airflow_provider_pioneer.testing.admin.AdminCall` below is served by ``app.py``
and is a method of :class:`~airflow_provider_pioneer.testing.EmulatorControl` (``server.py``
names it once: ``set_credits = client_method(SET_CREDITS)``). A parameter is a field of the
call's dataclass (a fault's: :class:`~airflow_provider_pioneer.testing.faults.FaultSpec`); a new
call is an entry here and its line in ``EmulatorControl``. The wire format (paths, bodies,
answers) is the one the admin API has always had.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any

from airflow_provider_pioneer.testing import extractor
from airflow_provider_pioneer.testing.admin import AdminCall, fields_of
from airflow_provider_pioneer.testing.faults import FaultSpec
from airflow_provider_pioneer.testing.state import EmulatorState

__all__ = ["ADMIN_CALLS"]

_ACCOUNT_DOC = "``account_of_key`` names an account by any of its keys; None: the default account."


@dataclass
class _NoParams:
    """A call without parameters."""


@dataclass
class _AccountOf:
    account_of_key: str | None = None


def _settings(**settings: Any) -> dict[str, Any]:
    return settings


def _nothing(_: Any) -> None:
    return None


def _object(doc: Any) -> dict[str, Any]:
    return dict(doc)


def _on(method: Callable[..., Any]) -> Callable[[EmulatorState, Any], Any]:
    """``run`` of a call whose parameters are the keyword arguments of that state method."""

    def run(state: EmulatorState, params: Any) -> Any:
        return method(state, **fields_of(params))

    run.state_method = method  # type: ignore[attr-defined]  # the agreement test checks its signature
    return run


INFO = AdminCall(
    "_fetch_info", "GET", "info", _NoParams,
    run=lambda s, _: {"api_key": s.bootstrap_key, "api_key_name": s.key_name_of(s.bootstrap_key),
                      "api_profile": s.profile.name},
    decode=_object, doc="The bootstrap key, its name and the API profile (behind ``api_key``...).",
)  # fmt: skip


@dataclass
class _NewAccount:
    credits: int | None = None
    spend_cap_tokens: int | None = None
    credit_ceiling_tokens: int | None = None


def _key_pair(doc: Any) -> tuple[str, str]:
    return doc["key"], doc["key_name"]


NEW_ACCOUNT = AdminCall(
    "new_account", "POST", "accounts", _NewAccount,
    run=lambda s, p: dict(zip(("key", "key_name"), s.new_account(**fields_of(p)), strict=True)),
    decode=_key_pair,
    doc="""Create an account; returns ``(key, key_name)`` of its bootstrap key.

        ``spend_cap_tokens`` (daily, 429) is legacy only; ``credit_ceiling_tokens`` (monthly, 403) current only.
        """,
)  # fmt: skip


@dataclass
class _CreateKey:
    name: str
    account_of_key: str | None = None


CREATE_KEY = AdminCall(
    "create_key", "POST", "keys", _CreateKey,
    run=lambda s, p: s.create_key(p.name, p.account_of_key), decode=lambda doc: str(doc["key"]),
    doc="Create a key directly (not through ``/create-api-key``, so no rate limit); returns its value.",
)  # fmt: skip


@dataclass
class _KeyAlive:
    key: str


KEY_IS_ALIVE = AdminCall(
    "key_is_alive", "POST", "keys/alive", _KeyAlive,
    run=lambda s, p: {"alive": s.key_is_alive(p.key)}, decode=lambda doc: bool(doc["alive"]),
    doc="Whether ``key`` was issued by this emulator and is not revoked.",
)  # fmt: skip


def _keys(doc: Any) -> list[dict[str, Any]]:
    return list(doc["keys"])


ALIVE_KEYS = AdminCall(
    "alive_keys", "POST", "keys/list", _AccountOf,
    run=lambda s, p: {"keys": s.list_keys(p.account_of_key)}, decode=_keys,
    doc=f"Alive keys of an account as ``{{id, name, created_at}}``, oldest first. {_ACCOUNT_DOC}",
)  # fmt: skip


@dataclass
class _Credits:
    tokens: int | None
    account_of_key: str | None = None
    code: str | None = None


SET_CREDITS = AdminCall(
    "set_credits", "PUT", "credits", _Credits, run=_on(EmulatorState.set_credits), decode=_nothing,
    doc="""Set remaining credits in tokens (None: unlimited).

        :param code: current profile: the 402's ``code``, ``"out_of_credits"`` (default) or
            ``"direct_model_requires_credits"``.
        """,
)  # fmt: skip


@dataclass
class _SpendCap:
    tokens: int | None
    account_of_key: str | None = None


SET_SPEND_CAP = AdminCall(
    "set_spend_cap", "PUT", "spend-cap", _SpendCap, run=_on(EmulatorState.set_spend_cap), decode=_nothing,
    doc="""Legacy profile: the daily spend cap in tokens (None: off), answered 429 +
        ``X-RateLimit-Reason: daily_spend_cap_exceeded``; also resets today's spend.""",
)  # fmt: skip


@dataclass
class _CreditCeiling:
    tokens: int | None
    code: str = "credit_ceiling_reached"
    account_of_key: str | None = None


SET_CREDIT_CEILING = AdminCall(
    "set_credit_ceiling", "PUT", "credit-ceiling", _CreditCeiling,
    run=_on(EmulatorState.set_credit_ceiling), decode=_nothing,
    doc="""Current profile: the monthly credit ceiling in tokens (None: off), answered 403
        ``{code, message, resolution_url}`` with ``code`` ``"credit_ceiling_reached"`` or
        ``"card_required"``; also resets this month's spend.""",
)  # fmt: skip


@dataclass
class _Latency:
    latency_ms: float
    per_text_latency_ms: float = 0.0


SET_LATENCY = AdminCall(
    "set_latency", "PUT", "latency", _Latency, run=_on(EmulatorState.set_latency), decode=_nothing,
    doc="The wait of each ``/inference`` call: ``latency_ms`` plus ``per_text_latency_ms`` a text.",
)  # fmt: skip


@dataclass
class _RateLimit:
    per_minute: float | None
    burst: float | None = None
    _: KW_ONLY
    model: str | None = None
    window_seconds: float | None = None
    window_in_limit: bool | None = None


SET_RATE_LIMIT = AdminCall(
    "set_rate_limit", "PUT", "rate-limit", _RateLimit, run=_on(EmulatorState.set_rate_limit), decode=_nothing,
    doc="""Limit of ``/inference``, per key (legacy) or per account (current); None disables.
        Limits start afresh; ``burst`` is the token bucket's capacity (None: one second's worth).
        ``model``, ``window_seconds``, ``window_in_limit``: the ``rate_limit_*`` settings of
        :class:`~airflow_provider_pioneer.testing.state.EmulatorConfig` (None keeps the current).""",
)  # fmt: skip


@dataclass
class _Enabled:
    enabled: bool


SET_RATE_LIMIT_HEADERS = AdminCall(
    "set_rate_limit_headers", "PUT", "rate-limit-headers", _Enabled,
    run=_on(EmulatorState.set_rate_limit_headers), decode=_nothing,
    doc="Send or hide ``X-RateLimit-Limit/-Remaining/-Reset`` (e.g. to pace from Retry-After only).",
)  # fmt: skip


@dataclass
class _PerMinute:
    per_minute: float | None


SET_KEY_RATE_LIMIT = AdminCall(
    "set_key_rate_limit", "PUT", "key-rate-limit", _PerMinute,
    run=_on(EmulatorState.set_key_rate_limit), decode=_nothing,
    doc="Per-key limit of the key-management endpoints (None disables).",
)  # fmt: skip


@dataclass
class _KeyListing:
    style: str | None
    page_size: int | None = None


SET_KEY_LISTING = AdminCall(
    "set_key_listing", "PUT", "key-listing", _KeyListing,
    run=lambda s, p: s.key_variants.set_listing(p.style, p.page_size), decode=_nothing,
    doc="""Page ``GET /list-api-keys`` in Pioneer's ``"cursor"`` style (``after_id``; ``has_more``,
        ``last_id``) or ``"offset"`` style (``offset``; ``total``, ``has_more``), ``page_size`` keys a
        page; ``None``: one page (API.md).""",
)  # fmt: skip


@dataclass
class _Revocation:
    accepts: str


SET_KEY_REVOCATION = AdminCall(
    "set_key_revocation", "PUT", "key-revocation", _Revocation,
    run=lambda s, p: s.key_variants.set_revocation(p.accepts), decode=_nothing,
    doc="""What ``DELETE /delete-api-key`` accepts: ``"any"`` (default), only ``"name"`` or only
        ``"key_id"``; the other field alone answers 422.""",
)  # fmt: skip


@dataclass
class _PerHour:
    per_hour: int | None


SET_CREATE_KEY_LIMIT = AdminCall(
    "set_create_key_limit", "PUT", "create-key-limit", _PerHour,
    run=_on(EmulatorState.set_create_key_limit), decode=_nothing,
    doc="``POST /create-api-key`` calls per account and rolling hour (None: unlimited).",
)  # fmt: skip


@dataclass
class _Warmup:
    seconds: float


SET_WARMUP = AdminCall(
    "set_warmup", "PUT", "warmup", _Warmup, run=_on(EmulatorState.set_warmup), decode=_nothing,
    doc="""Current profile: a model answers 425 + ``Retry-After`` for ``seconds`` after its first
        use; every model becomes cold again.""",
)  # fmt: skip


@dataclass
class _Models:
    models: list[str]


SET_UNSERVABLE_MODELS = AdminCall(
    "set_unservable_models", "PUT", "unservable-models", _Models,
    run=lambda s, p: s.set_unservable_models(list(p.models)), decode=_nothing,
    doc="Current profile: these model ids answer 409 (ids starting with ``job_unservable`` always do).",
)  # fmt: skip


@dataclass
class _BodyLimit:
    limit: int | None
    response: str = "html"


SET_MAX_BODY_BYTES = AdminCall(
    "set_max_body_bytes", "PUT", "max-body-bytes", _BodyLimit,
    run=_on(EmulatorState.set_max_body_bytes), decode=_nothing,
    doc="""Answer request bodies over ``limit`` bytes with a proxy's 413 before the API sees them
        (nothing billed); ``response`` is ``"html"`` (nginx's page) or ``"json"``. None: no limit.""",
)  # fmt: skip

INJECT = AdminCall(
    "inject", "POST", "faults", FaultSpec,
    run=lambda s, spec: {"fault_id": s.inject(spec)}, decode=lambda doc: str(doc["fault_id"]),
    doc='Inject a fault; returns its id (the key of ``counters()["faults_fired"]``).\n\n'
    + inspect.cleandoc(FaultSpec.__doc__ or ""),
)  # fmt: skip


def _faults(doc: Any) -> list[dict[str, Any]]:
    return list(doc["faults"])


FAULTS = AdminCall(
    "faults", "GET", "faults", _NoParams, run=lambda s, _: {"faults": s.faults()}, decode=_faults,
    doc="The injected faults in the order they are tried: ``id``, ``status``, ``fault``, ``fired``...",
)  # fmt: skip
CLEAR_FAULTS = AdminCall(
    "clear_faults", "DELETE", "faults", _NoParams, run=_on(EmulatorState.clear_faults), decode=_nothing,
    doc="Remove every injected fault.",
)  # fmt: skip
COUNTERS = AdminCall(
    "counters", "GET", "counters", _NoParams, run=_on(EmulatorState.counters), decode=_object,
    doc="""Counters of the whole emulator: ``requests`` and ``statuses`` by name, ``text_counts``
        (texts billed, per text), ``tokens_billed``, ``rate_limited`` (429s of the ``/inference``
        limiter), ``inference_rpm_peak`` / ``inference_rpm_peak_admitted`` (most ``/inference``
        requests one account sent / got past the limiter in any 60 s), ``keys_created_last_hour``
        (``/create-api-key`` calls), ``faults_fired``, ``max_concurrent_inference``,
        ``inference_in_flight`` (``/inference`` requests being answered right now)...""",
)  # fmt: skip
ACCOUNT_COUNTERS = AdminCall(
    "account_counters", "POST", "account-counters", _AccountOf,
    run=_on(EmulatorState.account_counters), decode=_object,
    doc="""One account's counters: ``inference_requests``, ``inference_rpm_peak``,
        ``inference_rpm_peak_admitted``, ``rate_limited``, ``keys_created_last_hour``, ``credits``,
        ``spent_today``, ``spent_this_month``.""",
)  # fmt: skip
RESET_COUNTERS = AdminCall(
    "reset_counters", "POST", "reset-counters", _NoParams, run=_on(EmulatorState.reset_counters),
    decode=_nothing, doc="Zero every counter (keys, accounts, credits, limits and faults are kept).",
)  # fmt: skip
SET_LIFECYCLE = AdminCall(
    "set_lifecycle", "PUT", "lifecycle", _settings, run=lambda s, p: s.lifecycle.configure(**p), decode=_object,
    doc="""Change the model-lifecycle simulation (durations, doc variants, faults); returns every setting.

        See :class:`~airflow_provider_pioneer.testing.lifecycle.LifecycleSettings` for the names
        (``queue_s``, ``epoch_s``, ``status_style``, ``fail_next_jobs``, ``running_status``, ``eval_f1``...).
        """,
)  # fmt: skip
LIFECYCLE_COUNTERS = AdminCall(
    "lifecycle_counters", "GET", "lifecycle/counters", _NoParams,
    run=lambda s, _: s.lifecycle.snapshot_counters(), decode=_object,
    doc="""Lifecycle counters: ``jobs_submitted``, ``idempotent_replays``, ``jobs_stopped``,
        ``presigned_puts``, ``presigned_puts_with_key``, ``evaluations_submitted``, ``submits_rate_limited``...
        and ``jobs`` (each job id's status now).""",
)  # fmt: skip


@dataclass
class _Extract:
    text: str
    labels: list[str]
    threshold: float = 0.5
    include_confidence: bool = True
    include_spans: bool = True


EXTRACT = AdminCall(
    "extract", "POST", "extract", _Extract, run=lambda _, p: extractor.extract(**fields_of(p)), decode=_object,
    doc="The per-text ``result`` the server returns for this text and these labels.",
)  # fmt: skip

#: Every admin call, in the order above (the routes are registered in it).
ADMIN_CALLS: tuple[AdminCall[..., Any], ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, AdminCall)
)
