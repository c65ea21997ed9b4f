"""The one exception the emulator's state raises to refuse a request (it becomes the HTTP answer)."""

from __future__ import annotations

from typing import Any

__all__ = ["AuthError"]


class AuthError(Exception):
    """A request the state refuses: ``status`` and the body become the HTTP answer.

    :param status: HTTP status code.
    :param detail: human-readable message; the body is ``{"detail": detail}`` unless ``body`` is given.
    :param headers: extra response headers (``Retry-After``, ``X-RateLimit-*``).
    :param body: the whole JSON body instead (e.g. ``{code, message, resolution_url}``).
    """

    def __init__(
        self,
        status: int,
        detail: str,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.body: dict[str, Any] = body if body is not None else {"detail": detail}
