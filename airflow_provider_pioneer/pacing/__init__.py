"""Client-side pacing: how fast requests leave, shared by every thread of one client.

:class:`Pacer` is what the client uses; :mod:`.rate` holds the pure rate controllers (the
adaptive default and the fixed pace of earlier releases) and :mod:`.headers` reads the
server's ``X-RateLimit-*`` budget.
"""

from __future__ import annotations

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders, parse_rate_limit_headers
from airflow_provider_pioneer.pacing.pacer import Pacer
from airflow_provider_pioneer.pacing.rate import DOCUMENTED_REQUESTS_PER_MINUTE, AdaptiveRate, StaticRate

__all__ = [
    "DOCUMENTED_REQUESTS_PER_MINUTE",
    "AdaptiveRate",
    "Pacer",
    "RateLimitHeaders",
    "StaticRate",
    "parse_rate_limit_headers",
]
