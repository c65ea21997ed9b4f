"""Start-up settings of the Pioneer emulator (:class:`EmulatorConfig`) and their checks.

Which settings make sense depends on the API profile (``profiles.py``): the daily spend cap is
the legacy API's, the monthly credit ceiling, warm-ups and not-servable models are the current
one's. A setting that does not fit is refused with a ``ValueError`` that says what to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from airflow_provider_pioneer.testing.billing import CEILING_CODES, CREDIT_CODES
from airflow_provider_pioneer.testing.header_styles import HEADER_STYLES
from airflow_provider_pioneer.testing.limiters import check_settings
from airflow_provider_pioneer.testing.profiles import DEFAULT_PROFILE, ApiProfile, get_profile

__all__ = ["DEFAULT", "EmulatorConfig", "check_codes", "check_money_settings"]

#: A setting left at this value takes the API profile's documented value.
DEFAULT: Literal["default"] = "default"


@dataclass
class EmulatorConfig:
    """Start-up settings of an emulator (most can be changed later through the state).

    :param api_profile: ``"current"`` (August 2026 API, the default) or ``"legacy"`` (June 2026).
    :param latency_ms: fixed wait of each ``/inference`` call.
    :param per_text_latency_ms: extra wait per text of an ``/inference`` call.
    :param rate_limit_per_minute: ``/inference`` limit, per key (legacy) or per account
        (current); ``"default"`` is the profile's documented limit (1,200 / 5,000); None disables.
    :param rate_limit_model: the limiter: ``"token_bucket"`` (the default), ``"fixed_window"``,
        ``"moving_window"`` (a sliding log) or ``"sliding_window"`` (a sliding-window counter);
        see :mod:`~airflow_provider_pioneer.testing.limiters`.
    :param rate_limit_burst: token bucket capacity; None means one second's worth (at least 1).
    :param rate_limit_window_seconds: window of the window models, whole seconds; each window
        allows ``rate_limit_per_minute * window / 60`` requests.
    :param rate_limit_window_in_limit: send ``X-RateLimit-Limit: 100;w=60`` rather than ``100``.
    :param rate_limit_headers: send ``X-RateLimit-Limit/-Remaining/-Reset`` on ``/inference``
        answers; None follows the profile (current: yes, legacy: no).
    :param rate_limit_header_style: which fields carry that budget: ``"x-ratelimit"`` (Pioneer's,
        the default) or the IETF draft's ``"ietf-split"`` (drafts 00-05), ``"ietf-dictionary"``
        (06) or ``"ietf-named"`` (07 on); see :mod:`~airflow_provider_pioneer.testing.header_styles`.
    :param key_rate_limit_per_minute: per-key limit on the key-management endpoints; None disables.
    :param create_key_limit_per_hour: ``POST /create-api-key`` calls per account and rolling hour;
        ``"default"`` follows the profile (current: 50, legacy: none); None disables.
    :param credits: tokens the default account may spend; None is unlimited.
    :param credits_code: ``code`` of the current profile's 402 (``out_of_credits`` or
        ``direct_model_requires_credits``).
    :param spend_cap_tokens: legacy only: daily (UTC) spend cap of the default account (429).
    :param credit_ceiling_tokens: current only: monthly (UTC) credit ceiling of the default account (403).
    :param credit_ceiling_code: ``code`` of that 403 (``credit_ceiling_reached`` or ``card_required``).
    :param warmup_seconds: current only: a model answers 425 with ``Retry-After`` for this long
        after its first use (0: no warm-up).
    :param unservable_models: current only: model ids that answer 409 (ids starting with
        ``job_unservable`` always do).
    :param max_body_bytes: request bodies larger than this get a proxy's 413 (None: no limit).
    :param max_body_response: body of that 413: ``"html"`` (nginx's page) or ``"json"``.
    :param seed: seed of the random generator behind fault ``rate``.
    :param max_text_chars: longer texts are rejected with 422.
    :param bootstrap_key: fixed value of the bootstrap key (random when None).
    """

    api_profile: str = DEFAULT_PROFILE
    latency_ms: float = 0.0
    per_text_latency_ms: float = 0.0
    rate_limit_per_minute: float | Literal["default"] | None = DEFAULT
    rate_limit_model: str = "token_bucket"
    rate_limit_burst: float | None = None
    rate_limit_window_seconds: float = 60.0
    rate_limit_window_in_limit: bool = False
    rate_limit_headers: bool | None = None
    rate_limit_header_style: str = "x-ratelimit"
    key_rate_limit_per_minute: float | None = None
    create_key_limit_per_hour: int | Literal["default"] | None = DEFAULT
    credits: int | None = None
    credits_code: str = "out_of_credits"
    spend_cap_tokens: int | None = None
    credit_ceiling_tokens: int | None = None
    credit_ceiling_code: str = "credit_ceiling_reached"
    warmup_seconds: float = 0.0
    unservable_models: tuple[str, ...] = ()
    max_body_bytes: int | None = None
    max_body_response: str = "html"
    seed: int = 0
    max_text_chars: int = 10_000
    bootstrap_key: str | None = None

    def __post_init__(self) -> None:
        profile = self.profile  # refuses an unknown name
        for name in ("rate_limit_per_minute", "create_key_limit_per_hour"):
            value = getattr(self, name)
            if isinstance(value, str) and value != DEFAULT:
                raise ValueError(f"{name} must be a number, None or {DEFAULT!r}, not {value!r}")
        rpm = self.rate_limit_per_minute
        check_settings(
            self.rate_limit_model, None if rpm == DEFAULT else rpm,
            window_s=self.rate_limit_window_seconds, burst=self.rate_limit_burst,
        )  # fmt: skip
        self.unservable_models = tuple(self.unservable_models)
        check_money_settings(profile, self.spend_cap_tokens, self.credit_ceiling_tokens)
        check_codes(self.credits_code, self.credit_ceiling_code)
        if not profile.model_readiness and (self.warmup_seconds or self.unservable_models):
            raise ValueError("warmup_seconds and unservable_models need api_profile='current'")
        if self.rate_limit_header_style not in HEADER_STYLES:
            raise ValueError(
                f"rate_limit_header_style must be one of {', '.join(HEADER_STYLES)}, "
                f"not {self.rate_limit_header_style!r}"
            )
        if self.max_body_response not in ("html", "json"):
            raise ValueError(f"max_body_response must be 'html' or 'json', not {self.max_body_response!r}")

    @property
    def profile(self) -> ApiProfile:
        return get_profile(self.api_profile)

    def cli_args(self) -> list[str]:
        """These settings as options of ``python -m airflow_provider_pioneer.testing`` (``__main__.py``)."""

        def opt(value: float | str | None) -> str:
            return "none" if value is None else str(value)

        args = [
            "--api-profile", self.api_profile,
            "--latency-ms", str(self.latency_ms), "--per-text-latency-ms", str(self.per_text_latency_ms),
            "--rate-limit-per-minute", opt(self.rate_limit_per_minute),
            "--rate-limit-model", self.rate_limit_model, "--rate-limit-burst", opt(self.rate_limit_burst),
            "--rate-limit-window-seconds", str(self.rate_limit_window_seconds),
            "--rate-limit-header-style", self.rate_limit_header_style,
            "--key-rate-limit-per-minute", opt(self.key_rate_limit_per_minute),
            "--create-key-limit-per-hour", opt(self.create_key_limit_per_hour),
            "--credits", opt(self.credits), "--credits-code", self.credits_code,
            "--spend-cap-tokens", opt(self.spend_cap_tokens),
            "--credit-ceiling-tokens", opt(self.credit_ceiling_tokens),
            "--credit-ceiling-code", self.credit_ceiling_code, "--warmup-seconds", str(self.warmup_seconds),
            "--max-body-bytes", opt(self.max_body_bytes), "--max-body-response", self.max_body_response,
            "--seed", str(self.seed), "--max-text-chars", str(self.max_text_chars),
        ]  # fmt: skip
        if self.rate_limit_window_in_limit:
            args.append("--rate-limit-window-in-limit")
        if self.rate_limit_headers is not None:
            args.append("--rate-limit-headers" if self.rate_limit_headers else "--no-rate-limit-headers")
        for model in self.unservable_models:
            args += ["--unservable-model", model]
        if self.bootstrap_key:
            args += ["--bootstrap-key", self.bootstrap_key]
        return args


def check_money_settings(profile: ApiProfile, spend_cap: int | None, ceiling: int | None) -> None:
    if spend_cap is not None and profile.coded_errors:
        raise ValueError(
            "the daily spend cap (429) is the legacy API's: use api_profile='legacy', or the current "
            "API's monthly credit ceiling (credit_ceiling_tokens / set_credit_ceiling, a 403)"
        )
    if ceiling is not None and not profile.coded_errors:
        raise ValueError("the monthly credit ceiling (403) needs api_profile='current'")


def check_codes(credits_code: str | None, ceiling_code: str | None) -> None:
    if credits_code is not None and credits_code not in CREDIT_CODES:
        raise ValueError(f"credits code must be one of {CREDIT_CODES}, not {credits_code!r}")
    if ceiling_code is not None and ceiling_code not in CEILING_CODES:
        raise ValueError(f"ceiling code must be one of {CEILING_CODES}, not {ceiling_code!r}")
