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
    remaining = _first_number(_header(headers, "X-RateLimit-Remaining"))
    if remaining is None:
        return None
    now = wall_now() if callable(wall_now) else wall_now
    reset_in = _reset_seconds(_header(headers, "X-RateLimit-Reset"), now)
    if reset_in is None:
        return None
    raw_limit = _header(headers, "X-RateLimit-Limit")
    limit = _first_number(raw_limit)
    window = None
    if raw_limit is not None and (match := _WINDOW.search(raw_limit)):
        window = float(match.group(1)) or None
    if limit is not None and limit <= 0:
        limit = None
    return RateLimitHeaders(limit=limit, remaining=remaining, reset_in=reset_in, window=window)
