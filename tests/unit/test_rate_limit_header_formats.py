"""The IETF draft's rate-limit fields, as gateways in front of Pioneer send them (pure parsing)."""

from __future__ import annotations

import pytest

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders, parse_rate_limit_headers

NOW = 1_800_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param(
            {"RateLimit-Limit": "100", "RateLimit-Remaining": "40", "RateLimit-Reset": "12"},
            RateLimitHeaders(limit=100, remaining=40, reset_in=12),
            id="drafts 00-05: one field each",
        ),
        pytest.param(
            {"ratelimit-limit": "100, 100;w=60", "ratelimit-remaining": "40", "ratelimit-reset": "12"},
            RateLimitHeaders(limit=100, remaining=40, reset_in=12, window=60),
            id="drafts 00-05: a quota policy in the limit, lower-case names",
        ),
        pytest.param(
            {"RateLimit": "limit=100, remaining=40, reset=12", "RateLimit-Policy": "100;w=60"},
            RateLimitHeaders(limit=100, remaining=40, reset_in=12, window=60),
            id="draft 06: one dictionary, a policy",
        ),
        pytest.param(
            {"RateLimit": "limit=100, remaining=40, reset=12"},
            RateLimitHeaders(limit=100, remaining=40, reset_in=12),
            id="draft 06: no policy",
        ),
        pytest.param(
            {"RateLimit": '"minute";r=40;t=12', "RateLimit-Policy": '"minute";q=100;w=60'},
            RateLimitHeaders(limit=100, remaining=40, reset_in=12, window=60),
            id="draft 07 on: a named budget",
        ),
        pytest.param(
            {
                "RateLimit": '"day";r=900;t=3000, "minute";r=7;t=20',
                "RateLimit-Policy": '"day";q=5000;w=86400, "minute";q=100;w=60',
            },
            RateLimitHeaders(limit=100, remaining=7, reset_in=20, window=60),
            id="draft 07 on: of two budgets the one with the least left binds",
        ),
        pytest.param(
            {"RateLimit": '"minute";r=40;t=12', "RateLimit-Policy": '"other";q=100;w=60'},
            RateLimitHeaders(limit=100, remaining=40, reset_in=12, window=60),
            id="draft 07 on: a policy of another name is the only one there is",
        ),
        pytest.param(
            {
                "X-RateLimit-Limit": "5000",
                "X-RateLimit-Remaining": "4000",
                "X-RateLimit-Reset": "30",
                "RateLimit": '"minute";r=1;t=5',
            },
            RateLimitHeaders(limit=5000, remaining=4000, reset_in=30),
            id="Pioneer's own X-RateLimit-* come first",
        ),
    ],
)
def test_the_ietf_drafts_fields_are_read_in_every_version(
    headers: dict[str, str], expected: RateLimitHeaders
) -> None:
    assert parse_rate_limit_headers(headers, NOW) == expected


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit": '"minute";q=100'},  # a policy sent in the wrong field: no r, no t
        {"RateLimit": '"minute";r=40'},  # no reset
        {"RateLimit": '"minute";r=ten;t=12'},
        {"RateLimit": '"day";r=40;t=86000'},  # a day-long reset is not a pacing budget
        {"RateLimit": "limit=100, remaining=-1, reset=3"},
        {"RateLimit-Remaining": "40"},  # the split form without its reset
        {"RateLimit": ""},
    ],
)
def test_unreadable_ietf_fields_count_as_absent(headers: dict[str, str]) -> None:
    assert parse_rate_limit_headers(headers, NOW) is None
