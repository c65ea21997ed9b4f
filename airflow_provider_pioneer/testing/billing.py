"""Money rules of the emulator: credits, the legacy daily spend cap, the current monthly ceiling.

Billing rule: a request costs the number of whitespace-separated words of its texts
(:func:`count_tokens`). The errors follow the account's API profile: ``legacy`` answers 402 with a
``detail`` string and a daily spend cap with 429 + ``X-RateLimit-Reason``; ``current`` answers 402
``{code: out_of_credits | direct_model_requires_credits, message, resolution_url}`` and a monthly
ceiling with 403 ``{code: credit_ceiling_reached | card_required, message, resolution_url}``.
Pure functions over :class:`Account`; the caller holds the state's lock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.profiles import RESOLUTION_URL, ApiProfile

__all__ = [
    "CEILING_CODES",
    "CREDIT_CODES",
    "Account",
    "charge",
    "check_budget",
    "count_tokens",
    "refuse_if_broke",
]

#: ``code`` values of a current-profile 402 (credits) and 403 (monthly ceiling).
CREDIT_CODES = ("out_of_credits", "direct_model_requires_credits")
CEILING_CODES = ("credit_ceiling_reached", "card_required")


def count_tokens(texts: list[str]) -> int:
    """Billable tokens of a request: whitespace-separated words summed over its texts."""
    return sum(len(t.split()) for t in texts)


@dataclass
class Account:
    """A Pioneer account: keys belong to it; credits, caps and ceilings are per account.

    :param credits: tokens left (None: unlimited).
    :param credits_code: ``code`` of the current profile's 402.
    :param spend_cap_tokens: legacy daily (UTC) spend cap (None: off).
    :param ceiling_tokens: current monthly (UTC) credit ceiling (None: off).
    :param ceiling_code: ``code`` of the current profile's 403.
    """

    id: str
    credits: int | None = None
    credits_code: str = "out_of_credits"
    spend_cap_tokens: int | None = None
    spent_day: date | None = None
    spent_today: int = 0
    ceiling_tokens: int | None = None
    ceiling_code: str = "credit_ceiling_reached"
    spent_month: tuple[int, int] | None = None
    spent_this_month: int = 0

    def roll_periods(self) -> None:
        """Start a new day / month of spend when the UTC date moved on."""
        now = datetime.now(UTC)
        if self.spent_day != now.date():
            self.spent_day, self.spent_today = now.date(), 0
        if self.spent_month != (now.year, now.month):
            self.spent_month, self.spent_this_month = (now.year, now.month), 0


def _seconds_to_utc_midnight() -> int:
    now = datetime.now(UTC)
    midnight = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    return max(1, math.ceil((midnight - now).total_seconds()))


def _payment_required(account: Account, profile: ApiProfile, needed: int | None) -> AuthError:
    left = account.credits or 0
    if not profile.coded_errors:
        if needed is None:
            return AuthError(402, "Insufficient credits: top up your account to continue")
        return AuthError(402, f"Insufficient credits: {left} tokens left, request needs {needed}")
    if account.credits_code == "direct_model_requires_credits":
        message = "Calling a model directly requires credits. Buy credits to continue."
    else:
        need = "" if needed is None else f", this request needs {needed}"
        message = f"You are out of credits ({left} tokens left{need}). Buy credits to continue."
    body = {"code": account.credits_code, "message": message, "resolution_url": RESOLUTION_URL}
    return AuthError(402, message, body=body)


def refuse_if_broke(account: Account, profile: ApiProfile) -> None:
    """Every authenticated call of an account without credits answers 402."""
    if account.credits is not None and account.credits <= 0:
        raise _payment_required(account, profile, None)


def check_budget(account: Account, tokens: int, profile: ApiProfile) -> None:
    """Raise the 402 / 429 spend cap / 403 ceiling a request of ``tokens`` would get; bill nothing."""
    if account.credits is not None and account.credits < tokens:
        raise _payment_required(account, profile, tokens)
    account.roll_periods()
    if account.spend_cap_tokens is not None and account.spent_today + tokens > account.spend_cap_tokens:
        raise AuthError(
            429,
            "Daily spend cap exceeded",
            {
                "X-RateLimit-Reason": "daily_spend_cap_exceeded",
                "Retry-After": str(_seconds_to_utc_midnight()),
            },
        )
    if account.ceiling_tokens is not None and account.spent_this_month + tokens > account.ceiling_tokens:
        if account.ceiling_code == "card_required":
            message = (
                "A payment card is required to spend beyond your included credits. Add a card to continue."
            )
        else:
            message = (
                f"Your monthly credit ceiling of {account.ceiling_tokens} tokens is reached "
                f"({account.spent_this_month} used). Raise the ceiling to continue."
            )
        body = {"code": account.ceiling_code, "message": message, "resolution_url": RESOLUTION_URL}
        raise AuthError(403, message, body=body)


def charge(account: Account, tokens: int) -> None:
    """Take ``tokens`` from the account (after :func:`check_budget` passed)."""
    account.roll_periods()
    if account.credits is not None:
        account.credits -= tokens
    account.spent_today += tokens
    account.spent_this_month += tokens
