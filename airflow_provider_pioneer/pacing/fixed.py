"""The fixed pace of earlier releases (``Pacer(adaptive=False)``), kept for users who want it and
for the comparisons in ``benchmarks/inference``.

The same interface as :class:`~airflow_provider_pioneer.pacing.rate.AdaptiveRate`, so the
:class:`~airflow_provider_pioneer.pacing.Pacer` drives either.
"""

from __future__ import annotations

from airflow_provider_pioneer.pacing.headers import RateLimitHeaders

__all__ = ["StaticRate"]


class StaticRate:
    """A fixed pace that slows by a tenth per 429 and creeps back (the earlier releases' pacing).

    :param requests_per_minute: the pace; ``None`` paces only by ``Retry-After``.
    """

    #: Lowest fraction of the configured rate that repeated 429s can push us to.
    MIN_RATE_FRACTION = 0.25

    def __init__(self, requests_per_minute: float | None) -> None:
        self.configured = None if requests_per_minute is None else requests_per_minute / 60.0
        self.current = self.configured
        self.notices: list[str] = []

    def rate(self, now: float) -> float | None:
        return self.current

    def not_before(self, now: float) -> float:
        return now

    def reset_at(self, now: float) -> float | None:
        return None

    def gate_jitter(self, seconds: float) -> float:
        return 0.0

    def spacing(self, rate: float) -> float:
        return 1.0 / rate

    def on_headers(self, info: RateLimitHeaders, now: float, sent_at: float | None = None) -> None:
        pass

    def on_held(self, start: float, until: float) -> None:
        pass

    def on_sent(self, now: float) -> None:
        pass

    def on_success(self, now: float, sent_at: float | None) -> None:
        if self.current is not None and self.configured is not None and self.current < self.configured:
            self.current = min(self.configured, self.current + self.configured / 100.0)

    def on_rate_limited(self, now: float, sent_at: float | None) -> bool:
        if self.current is not None and self.configured is not None:
            self.current = max(self.configured * self.MIN_RATE_FRACTION, self.current * 0.9)
        return True

    def describe(self, now: float) -> str:
        if self.current is None:
            return "pace: Retry-After only"
        return f"pace {self.current * 60:,.0f}/min"

    def source(self, now: float) -> str:
        return "fixed" if self.current is not None else "Retry-After only"
