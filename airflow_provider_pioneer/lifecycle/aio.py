"""Async reads of Pioneer's API for triggers, over httpx (already installed with Airflow).

GETs (a trigger polls) and one bodiless POST (a killed task's trigger stops its training job),
with the sync client's rules: the key in
``X-API-Key`` (or Bearer) to the configured host only, no redirects, errors typed and summarised
by :func:`~airflow_provider_pioneer.responses.error_for_response` and redacted.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import httpx
import requests
from requests.structures import CaseInsensitiveDict

from airflow_provider_pioneer import safe_json
from airflow_provider_pioneer.client import MAX_BODY_BYTES, body_too_large
from airflow_provider_pioneer.exceptions import (
    PioneerConnectionError,
    PioneerRedirectError,
    PioneerResponseError,
)
from airflow_provider_pioneer.redaction import Redactor
from airflow_provider_pioneer.responses import error_for_response
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


def _as_requests_response(response: httpx.Response) -> requests.Response:
    """An httpx answer as a ``requests.Response``, so the sync client's error parsing applies unchanged."""
    shim = requests.Response()
    shim.status_code = response.status_code
    shim._content = response.content
    shim.headers = CaseInsensitiveDict(response.headers.items())
    shim.reason = response.reason_phrase
    shim.encoding = response.encoding
    return shim


class AsyncPioneerReader:
    """GET JSON documents from Pioneer asynchronously.

    :param settings: base URL, key, auth scheme and timeout of the connection.
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        self.settings = settings
        self._redactor = Redactor([settings.api_key])
        header = (
            {"Authorization": f"Bearer {settings.api_key}"}
            if settings.auth_scheme == "bearer"
            else {"X-API-Key": settings.api_key}
        )
        self._http = httpx.AsyncClient(
            base_url=settings.base_url,
            headers={**header, "Accept": "application/json"},
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
        and refused past :data:`~airflow_provider_pioneer.client.MAX_BODY_BYTES`.
        """
        try:
            async with asyncio.timeout(self.settings.deadline):
                response = await self._read(route, params)
        except TimeoutError:
            raise PioneerConnectionError(
                f"Pioneer {route}: no whole answer within the call's {self.settings.deadline:g} s deadline. "
                "Raise the connection extra 'deadline' or try later."
            ) from None
        except httpx.HTTPError as exc:
            raise PioneerConnectionError(f"Pioneer {route}: {type(exc).__name__}.") from None
        if 200 <= response.status_code < 300:
            try:
                return safe_json.loads(response.content)
            except ValueError:
                raise PioneerResponseError(f"Pioneer {route} answered a body that is not JSON.") from None
        if 300 <= response.status_code < 400:
            raise PioneerRedirectError(
                f"Pioneer {route} was redirected (HTTP {response.status_code}); not followed.",
                status=response.status_code,
            )
        raise error_for_response(_as_requests_response(response), str(route), self._redactor.redact)

    async def post(self, route: Route) -> Any:
        """A bodiless POST of ``route`` (``…/stop``), under the same rules as :meth:`get`."""
        if route.method != "POST":
            raise ValueError(f"{route} is not a POST route")
        return await self.get(route)

    async def _read(self, route: Route, params: dict[str, Any] | None) -> httpx.Response:
        """The response with its whole body read, refused past the size cap while it arrives."""
        async with self._http.stream(route.method, route.path, params=params) as response:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise body_too_large(str(route), MAX_BODY_BYTES)
                chunks.append(chunk)
        response._content = b"".join(chunks)  # what .content reads, as after response.read()
        return response
