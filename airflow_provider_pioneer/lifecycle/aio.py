"""Async reads of Pioneer's API for triggers, over httpx (already installed with Airflow).

GETs (a trigger polls) and one bodiless POST (a killed task's trigger stops its training job),
with the sync client's rules, from the same core (:mod:`~airflow_provider_pioneer.http_core`): its
headers (the key in ``X-API-Key`` or Bearer, to the configured host only), no redirects, its size
cap, its success decoding, and errors typed, summarised and redacted by the one error mapping.

One attempt per call, by design: a trigger's poll loop is its retry, and it judges a failure by
the same typed errors (:attr:`~airflow_provider_pioneer.exceptions.PioneerError.transient`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx

from airflow_provider_pioneer.exceptions import PioneerConnectionError
from airflow_provider_pioneer.http_core import MAX_BODY_BYTES, Answer, BodyCap, decode_answer, request_headers
from airflow_provider_pioneer.redaction import Redactor
from airflow_provider_pioneer.urls import Route

__all__ = ["AsyncPioneerReader", "ConnectionSettings"]


@dataclass(repr=False)
class ConnectionSettings:
    """What a trigger needs of a Pioneer connection; the key never reaches a repr or the trigger's kwargs."""

    base_url: str
    api_key: str
    auth_scheme: str = "x-api-key"
    timeout: float = 60.0
    deadline: float = 600.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"ConnectionSettings(base_url={self.base_url!r})"


class AsyncPioneerReader:
    """GET JSON documents from Pioneer asynchronously.

    :param settings: base URL, key, auth scheme and timeout of the connection.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._redactor = Redactor([settings.api_key])
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            headers=request_headers(settings.auth_scheme, settings.api_key),
            timeout=settings.timeout,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"AsyncPioneerReader(base_url={self.settings.base_url!r})"

    async def __aenter__(self) -> AsyncPioneerReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    async def get(self, route: Route, params: dict[str, Any] | None = None) -> Any:
        """The JSON answer of ``route``; a typed :class:`PioneerError` otherwise.

        Like the sync client's calls, bounded as a whole by the connection's ``deadline`` (httpx's
        timeout bounds each read, so a server trickling its answer would hold a trigger forever)
        and refused past :data:`~airflow_provider_pioneer.http_core.MAX_BODY_BYTES`.
        """
        try:
            async with asyncio.timeout(self.settings.deadline):
                answer = await self._read(route, params)
        except TimeoutError:
            raise PioneerConnectionError(
                f"Pioneer {route}: no whole answer within the call's {self.settings.deadline:g} s deadline. "
                "Raise the connection extra 'deadline' or try later."
            ) from None
        except httpx.HTTPError as exc:
            raise PioneerConnectionError(f"Pioneer {route}: {type(exc).__name__}.") from None
        return decode_answer(answer, str(route), self._redactor.redact)

    async def post(self, route: Route) -> Any:
        """A bodiless POST of ``route`` (``…/stop``), under the same rules as :meth:`get`."""
        if route.method != "POST":
            raise ValueError(f"{route} is not a POST route")
        return await self.get(route)

    async def _read(self, route: Route, params: dict[str, Any] | None) -> Answer:
        """The whole answer, refused past the size cap while it arrives."""
        async with self._http.stream(route.method, route.path, params=params) as response:
            body = BodyCap(str(route), MAX_BODY_BYTES)  # read here, so a test may lower the cap
            async for chunk in response.aiter_bytes():
                body.add(chunk)
        return Answer(
            response.status_code, response.headers, body.content(), response.reason_phrase, response.encoding
        )
