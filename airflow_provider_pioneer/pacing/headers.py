"""Read the account's rate-limit budget from ``X-RateLimit-*`` response headers.

Some Pioneer server revisions answer every request with::

    X-RateLimit-Limit: 5000        # requests allowed per window
    X-RateLimit-Remaining: 4212    # left in this window, for the whole account
    X-RateLimit-Reset: 37          # when the budget is whole again

The format is not documented, so each value is read leniently: the first number of the
field (``5000``, ``5000, 5000;w=60`` and ``5000;w=60`` all give 5000; a ``w=`` parameter
is taken as the window length). ``Reset`` may be delta-seconds, epoch seconds (a number
above 10^9) or an HTTP date. Anything unreadable counts as absent: a proxy's odd header
must never break a run.

A gateway in front of Pioneer (or another server of its API) may speak the IETF draft
instead (draft-ietf-httpapi-ratelimit-headers), read when no ``X-RateLimit-Remaining`` comes:

* drafts 00-05, one field each: ``RateLimit-Limit: 100, 100;w=60``, ``RateLimit-Remaining: 50``,
  ``RateLimit-Reset: 30`` (delta-seconds);
* draft 06, one dictionary: ``RateLimit: limit=100, remaining=50, reset=30`` with
  ``RateLimit-Policy: 100;w=60``;
* drafts 07 on, named policies: ``RateLimit-Policy: "minute";q=100;w=60, "day";q=5000;w=86400``
  and ``RateLimit: "minute";r=50;t=30``. Of several budgets the one with the least left binds.
"""

from __future__ import annotations

import email.utils
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["EPOCH_THRESHOLD", "RateLimitHeaders", "parse_rate_limit_headers"]

#: A ``Reset`` above this is a Unix timestamp, not a number of seconds (10^9 s is 31 years).
EPOCH_THRESHOLD = 1e9
#: A reset further away than this is not believed (a clock gone wrong, a day-long quota).
MAX_RESET_SECONDS = 3600.0

_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)")
_WINDOW = re.compile(r"\bw\s*=\s*([0-9]+(?:\.[0-9]+)?)")


@dataclass(frozen=True)
class RateLimitHeaders:
    """One response's view of the account's budget.

    :param limit: requests allowed per window (``None`` if not sent).
    :param remaining: requests left before the server answers 429.
    :param reset_in: seconds from the response until the budget is whole again.
    :param window: window length in seconds, when the server said (``w=``).
    """

    limit: float | None
    remaining: float
    reset_in: float
    window: float | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # Plain dicts (tests, other HTTP stacks) are case-sensitive; requests' are not.
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def _first_number(value: str | None) -> float | None:
    if value is None:
        return None
    match = _NUMBER.match(str(value))
    if not match:
        return None
    number = float(match.group(1))
    return number if math.isfinite(number) else None


def _reset_seconds(value: str | None, wall_now: float) -> float | None:
    if value is None:
        return None
    number = _first_number(value)
    if number is not None:
        seconds = number - wall_now if number > EPOCH_THRESHOLD else number
    else:
        try:
            when = email.utils.parsedate_to_datetime(value.strip())
        except (TypeError, ValueError, IndexError):
            return None
        if when is None or when.tzinfo is None:
            return None
        seconds = when.timestamp() - wall_now
    if seconds > MAX_RESET_SECONDS:
        return None
    return max(0.0, seconds)  # a reset just past (clock skew) means: the budget is whole now


def parse_rate_limit_headers(
    headers: Mapping[str, str] | None, wall_now: float | Callable[[], float]
) -> RateLimitHeaders | None:
    """The budget the headers announce, or ``None`` when ``Remaining`` or ``Reset`` is missing or bad.

    :param headers: the response headers (any mapping; names are matched case-insensitively).
    :param wall_now: the current Unix time (or a function giving it), for epoch and date resets.
    """
    if not headers:
        return None
    now = wall_now() if callable(wall_now) else wall_now
    for prefix in ("X-RateLimit-", "RateLimit-"):
        if _header(headers, prefix + "Remaining") is not None:
            return _split_fields(headers, prefix, now)
    structured = _header(headers, "RateLimit")
    return None if structured is None else _structured(structured, _header(headers, "RateLimit-Policy"))


def _split_fields(headers: Mapping[str, str], prefix: str, now: float) -> RateLimitHeaders | None:
    """``X-RateLimit-*`` (Pioneer's) or the IETF drafts' first ``RateLimit-*``: one field each."""
    remaining = _first_number(_header(headers, prefix + "Remaining"))
    if remaining is None:
        return None
    reset_in = _reset_seconds(_header(headers, prefix + "Reset"), now)
    if reset_in is None:
        return None
    raw_limit = _header(headers, prefix + "Limit")
    return _budget(_first_number(raw_limit), remaining, reset_in, _window_of(raw_limit))


def _window_of(field: str | None) -> float | None:
    match = _WINDOW.search(field) if field is not None else None
    return (float(match.group(1)) or None) if match else None


def _budget(limit: float | None, remaining: float, reset_in: float, window: float | None) -> RateLimitHeaders:
    if limit is not None and limit <= 0:
        limit = None
    return RateLimitHeaders(limit=limit, remaining=remaining, reset_in=reset_in, window=window)


def _members(field: str) -> list[tuple[str, dict[str, str]]]:
    """A structured list or dictionary field as ``(name, parameters)`` pairs: ``"a";r=5`` gives
    ``("a", {"r": "5"})``, ``limit=100`` gives ``("", {"limit": "100"})``."""
    members = []
    for member in field.split(","):
        parts = [part.strip() for part in member.split(";")]
        name = "" if "=" in parts[0] else parts.pop(0).strip('"')
        params = {}
        for part in parts:
            key, _, value = part.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        members.append((name, params))
    return members


def _structured(field: str, policy_field: str | None) -> RateLimitHeaders | None:
    """The IETF drafts' one ``RateLimit`` field (06: a dictionary; 07 on: named budgets)."""
    members = _members(field)
    merged = {key: value for _, params in members for key, value in params.items()}
    budgets: list[tuple[float, float, str]] = []  # remaining, reset, policy name
    if "remaining" in merged:  # draft 06: limit=100, remaining=50, reset=30
        budgets.append((_number_or_nan(merged.get("remaining")), _number_or_nan(merged.get("reset")), ""))
    else:
        budgets += [
            (_number_or_nan(params.get("r")), _number_or_nan(params.get("t")), name)
            for name, params in members
        ]
    usable = [(r, t, name) for r, t, name in budgets if r >= 0 and 0 <= t <= MAX_RESET_SECONDS]
    if not usable:
        return None
    remaining, reset_in, name = min(usable, key=lambda budget: (budget[0], -budget[1]))
    limit, window = _policy(policy_field, name, merged.get("limit"))
    return _budget(limit, remaining, reset_in, window)


def _policy(field: str | None, name: str, fallback_limit: str | None) -> tuple[float | None, float | None]:
    """``(limit, window)`` of the budget named ``name`` in ``RateLimit-Policy``, as far as it says."""
    if field is None:
        return _first_number(fallback_limit), None
    policies = _members(field)
    if all(not params.get("q") for _, params in policies):  # draft 06: "100;w=60"
        return _first_number(field), _window_of(field)
    chosen = next((params for policy, params in policies if policy == name), policies[0][1])
    return _first_number(chosen.get("q")), (_first_number(chosen.get("w")) or None)


def _number_or_nan(value: str | None) -> float:
    number = _first_number(value)
    return math.nan if number is None else number
