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
from dataclasses import KW_ONLY, dataclass
from typing import Any

from airflow_provider_pioneer.testing import extractor
from airflow_provider_pioneer.testing.admin import (
    AdminCall,
    NoParams,
    fields_of,
    json_object,
    keyword_settings,
    no_answer,
    on_state,
)
from airflow_provider_pioneer.testing.faults import FaultSpec
from airflow_provider_pioneer.testing.state import EmulatorState

__all__ = ["ADMIN_CALLS"]

_ACCOUNT_DOC = "``account_of_key`` names an account by any of its keys; None: the default account."


@dataclass
class _AccountOf:
    account_of_key: str | None = None


def _fault_id(doc: Any) -> str:
    return str(doc["fault_id"])


def _key(doc: Any) -> str:
    return str(doc["key"])


def _alive(doc: Any) -> bool:
    return bool(doc["alive"])


INFO = AdminCall(
    "_fetch_info", "GET", "info", NoParams,
    run=lambda s, _: {"api_key": s.bootstrap_key, "api_key_name": s.key_name_of(s.bootstrap_key),
                      "api_profile": s.profile.name},
    decode=json_object, doc="The bootstrap key, its name and the API profile (behind ``api_key``...).",
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
    run=lambda s, p: s.create_key(p.name, p.account_of_key), decode=_key,
    doc="Create a key directly (not through ``/create-api-key``, so no rate limit); returns its value.",
)  # fmt: skip


@dataclass
class _KeyAlive:
    key: str


KEY_IS_ALIVE = AdminCall(
    "key_is_alive", "POST", "keys/alive", _KeyAlive,
    run=lambda s, p: {"alive": s.key_is_alive(p.key)}, decode=_alive,
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
    "set_credits", "PUT", "credits", _Credits, run=on_state(EmulatorState.set_credits), decode=no_answer,
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
    "set_spend_cap", "PUT", "spend-cap", _SpendCap, run=on_state(EmulatorState.set_spend_cap), decode=no_answer,
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
    run=on_state(EmulatorState.set_credit_ceiling), decode=no_answer,
    doc="""Current profile: the monthly credit ceiling in tokens (None: off), answered 403
        ``{code, message, resolution_url}`` with ``code`` ``"credit_ceiling_reached"`` or
        ``"card_required"``; also resets this month's spend.""",
)  # fmt: skip


@dataclass
class _Latency:
    latency_ms: float
    per_text_latency_ms: float = 0.0


SET_LATENCY = AdminCall(
    "set_latency", "PUT", "latency", _Latency, run=on_state(EmulatorState.set_latency), decode=no_answer,
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
    "set_rate_limit", "PUT", "rate-limit", _RateLimit, run=on_state(EmulatorState.set_rate_limit), decode=no_answer,
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
    run=on_state(EmulatorState.set_rate_limit_headers), decode=no_answer,
    doc="Send or hide ``X-RateLimit-Limit/-Remaining/-Reset`` (e.g. to pace from Retry-After only).",
)  # fmt: skip


@dataclass
class _PerMinute:
    per_minute: float | None


SET_KEY_RATE_LIMIT = AdminCall(
    "set_key_rate_limit", "PUT", "key-rate-limit", _PerMinute,
    run=on_state(EmulatorState.set_key_rate_limit), decode=no_answer,
    doc="Per-key limit of the key-management endpoints (None disables).",
)  # fmt: skip


@dataclass
class _KeyListing:
    style: str | None
    page_size: int | None = None


SET_KEY_LISTING = AdminCall(
    "set_key_listing", "PUT", "key-listing", _KeyListing,
    run=lambda s, p: s.key_variants.set_listing(p.style, p.page_size), decode=no_answer,
    doc="""Page ``GET /list-api-keys`` in Pioneer's ``"cursor"`` style (``after_id``; ``has_more``,
        ``last_id``) or ``"offset"`` style (``offset``; ``total``, ``has_more``), ``page_size`` keys a
        page; ``None``: one page (API.md).""",
)  # fmt: skip


@dataclass
class _Revocation:
    accepts: str


SET_KEY_REVOCATION = AdminCall(
    "set_key_revocation", "PUT", "key-revocation", _Revocation,
    run=lambda s, p: s.key_variants.set_revocation(p.accepts), decode=no_answer,
    doc="""What ``DELETE /delete-api-key`` accepts: ``"any"`` (default), only ``"name"`` or only
        ``"key_id"``; the other field alone answers 422.""",
)  # fmt: skip


@dataclass
class _PerHour:
    per_hour: int | None


SET_CREATE_KEY_LIMIT = AdminCall(
    "set_create_key_limit", "PUT", "create-key-limit", _PerHour,
    run=on_state(EmulatorState.set_create_key_limit), decode=no_answer,
    doc="``POST /create-api-key`` calls per account and rolling hour (None: unlimited).",
)  # fmt: skip


@dataclass
class _Warmup:
    seconds: float


SET_WARMUP = AdminCall(
    "set_warmup", "PUT", "warmup", _Warmup, run=on_state(EmulatorState.set_warmup), decode=no_answer,
    doc="""Current profile: a model answers 425 + ``Retry-After`` for ``seconds`` after its first
        use; every model becomes cold again.""",
)  # fmt: skip


@dataclass
class _Models:
    models: list[str]

    def __post_init__(self) -> None:
        self.models = list(self.models)  # any iterable of ids, as before


SET_UNSERVABLE_MODELS = AdminCall(
    "set_unservable_models", "PUT", "unservable-models", _Models,
    run=lambda s, p: s.set_unservable_models(list(p.models)), decode=no_answer,
    doc="Current profile: these model ids answer 409 (ids starting with ``job_unservable`` always do).",
)  # fmt: skip


@dataclass
class _BodyLimit:
    limit: int | None
    response: str = "html"


SET_MAX_BODY_BYTES = AdminCall(
    "set_max_body_bytes", "PUT", "max-body-bytes", _BodyLimit,
    run=on_state(EmulatorState.set_max_body_bytes), decode=no_answer,
    doc="""Answer request bodies over ``limit`` bytes with a proxy's 413 before the API sees them
        (nothing billed); ``response`` is ``"html"`` (nginx's page) or ``"json"``. None: no limit.""",
)  # fmt: skip

INJECT = AdminCall(
    "inject", "POST", "faults", FaultSpec,
    run=lambda s, spec: {"fault_id": s.inject(spec)}, decode=_fault_id,
    doc='Inject a fault; returns its id (the key of ``counters()["faults_fired"]``).\n\n'
    + inspect.cleandoc(FaultSpec.__doc__ or ""),
)  # fmt: skip


def _faults(doc: Any) -> list[dict[str, Any]]:
    return list(doc["faults"])


FAULTS = AdminCall(
    "faults", "GET", "faults", NoParams, run=lambda s, _: {"faults": s.faults()}, decode=_faults,
    doc="The injected faults in the order they are tried: ``id``, ``status``, ``fault``, ``fired``...",
)  # fmt: skip
CLEAR_FAULTS = AdminCall(
    "clear_faults", "DELETE", "faults", NoParams, run=on_state(EmulatorState.clear_faults), decode=no_answer,
    doc="Remove every injected fault.",
)  # fmt: skip
COUNTERS = AdminCall(
    "counters", "GET", "counters", NoParams, run=on_state(EmulatorState.counters), decode=json_object,
    doc="""Counters of the whole emulator: ``requests`` and ``statuses`` by name, ``text_counts``
        (texts billed, per text), ``tokens_billed``, ``rate_limited`` (429s of the ``/inference``
        limiter), ``inference_rpm_peak`` / ``inference_rpm_peak_admitted`` (most ``/inference``
        requests one account sent / got past the limiter in any 60 s), ``keys_created_last_hour``
        (``/create-api-key`` calls), ``faults_fired``, ``max_concurrent_inference``,
        ``inference_in_flight`` (``/inference`` requests being answered right now)...""",
)  # fmt: skip
ACCOUNT_COUNTERS = AdminCall(
    "account_counters", "POST", "account-counters", _AccountOf,
    run=on_state(EmulatorState.account_counters), decode=json_object,
    doc="""One account's counters: ``inference_requests``, ``inference_rpm_peak``,
        ``inference_rpm_peak_admitted``, ``rate_limited``, ``keys_created_last_hour``, ``credits``,
        ``spent_today``, ``spent_this_month``.""",
)  # fmt: skip
RESET_COUNTERS = AdminCall(
    "reset_counters", "POST", "reset-counters", NoParams, run=on_state(EmulatorState.reset_counters),
    decode=no_answer, doc="Zero every counter (keys, accounts, credits, limits and faults are kept).",
)  # fmt: skip
SET_LIFECYCLE = AdminCall(
    "set_lifecycle", "PUT", "lifecycle", keyword_settings, run=lambda s, p: s.lifecycle.configure(**p), decode=json_object,
    doc="""Change the model-lifecycle simulation (durations, doc variants, faults); returns every setting.

        See :class:`~airflow_provider_pioneer.testing.lifecycle.LifecycleSettings` for the names
        (``queue_s``, ``epoch_s``, ``status_style``, ``fail_next_jobs``, ``running_status``, ``eval_f1``...).
        """,
)  # fmt: skip
LIFECYCLE_COUNTERS = AdminCall(
    "lifecycle_counters", "GET", "lifecycle/counters", NoParams,
    run=lambda s, _: s.lifecycle.snapshot_counters(), decode=json_object,
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

    def __post_init__(self) -> None:
        self.labels = list(self.labels)


EXTRACT = AdminCall(
    "extract", "POST", "extract", _Extract, run=lambda _, p: extractor.extract(**fields_of(p)), decode=json_object,
    doc="The per-text ``result`` the server returns for this text and these labels.",
)  # fmt: skip

#: Every admin call, in the order above (the routes are registered in it).
ADMIN_CALLS: tuple[AdminCall[..., Any], ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, AdminCall)
)
