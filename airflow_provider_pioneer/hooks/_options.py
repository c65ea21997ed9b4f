"""A Pioneer connection's transport extras, read and checked once (the client and the triggers use them).

Pure: no Airflow. A number that is absent, null or empty (a cleared form field) is ``None`` here,
so each caller applies its own default (the Test button caps the timeout, a hook argument wins).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_pioneer.exceptions import PioneerConfigurationError

__all__ = ["ConnectionOptions"]

_TRUE = {"true", "1", "yes", "on"}
_N = TypeVar("_N", int, float)


def as_bool(value: Any) -> bool:
    """A boolean extra: ``True`` or a string like ``"true"``/``"1"``/``"yes"``/``"on"``."""
    return value is True or str(value).strip().lower() in _TRUE


@dataclass(frozen=True)
class ConnectionOptions:
    """The extras that shape how requests are sent.

    :param timeout: ``timeout``: seconds per request.
    :param max_retries: ``max_retries``: the retry budget.
    :param deadline: ``deadline``: seconds per call, retries included.
    :param warmup_timeout: ``warmup_timeout``: seconds in all for warming models (425).
    :param auth_scheme: ``auth_scheme``, lower-cased (``x-api-key`` when unset).
    :param allow_insecure_http: ``allow_insecure_http``.
    """

    timeout: float | None = None
    max_retries: int | None = None
    deadline: float | None = None
    warmup_timeout: float | None = None
    auth_scheme: str = "x-api-key"
    allow_insecure_http: bool = False

    @classmethod
    def parse(cls, extras: Mapping[str, Any], conn_id: str) -> ConnectionOptions:
        """The options of a connection's extras.

        :raises PioneerConfigurationError: a numeric extra that is not a number, naming it.
        """

        def number(name: str, kind: Callable[[Any], _N]) -> _N | None:
            value = extras.get(name)
            if value is None or value == "":
                return None
            try:
                return kind(value)
            except (TypeError, ValueError):
                raise PioneerConfigurationError(
                    f"Connection {conn_id!r}: extra {name!r} must be a number, not {value!r}."
                ) from None

        return cls(
            timeout=number("timeout", float),
            max_retries=number("max_retries", int),
            deadline=number("deadline", float),
            warmup_timeout=number("warmup_timeout", float),
            auth_scheme=str(extras.get("auth_scheme") or "x-api-key").lower(),
            allow_insecure_http=as_bool(extras.get("allow_insecure_http", False)),
        )
