"""Typed errors for the Pioneer provider.

One class per failure class a caller handles differently, all under
:class:`PioneerError` (an ``AirflowException``) so ``except PioneerError``
catches everything this package raises about the API. Each carries the HTTP
``status`` and the server's ``detail`` (already summarised, never a key).
"""

from __future__ import annotations

from typing import Any

from airflow_provider_pioneer._compat import AirflowException

__all__ = [
    "PioneerAuthError",
    "PioneerConfigurationError",
    "PioneerConnectionError",
    "PioneerError",
    "PioneerNotFoundError",
    "PioneerPaymentRequiredError",
    "PioneerRateLimitError",
    "PioneerResponseError",
    "PioneerServerError",
    "PioneerSpendCapError",
    "PioneerValidationError",
]


class PioneerError(AirflowException):
    """Base class of every error about the Pioneer API.

    :param message: short text that says what happened and what to do.
    :param status: HTTP status of the response, or ``None`` when there was none.
    :param detail: the server's error detail, parsed from either error envelope.
    :param retry_after: seconds the server asked to wait, when it said so.
    """

    #: What the user should do about it; appended to the message.
    hint: str = ""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
    ) -> None:
        text = message
        if self.hint:
            text = (
                f"{message.rstrip()}{'' if message.rstrip().endswith(('.', '?', '!')) else '.'} {self.hint}"
            )
        super().__init__(text)
        self.message = text
        self.status = status
        self.detail = detail
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive the default pickling that
        # Airflow uses to move exceptions between processes.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(cls: type[PioneerError], args: tuple[Any, ...], state: dict[str, Any]) -> PioneerError:
    err = cls.__new__(cls)
    Exception.__init__(err, *args)
    err.__dict__.update(state)
    return err


class PioneerConfigurationError(PioneerError):
    """The connection or the call is configured in a way that cannot work (no request was sent)."""


class PioneerConnectionError(PioneerError):
    """The API could not be reached, or did not answer in time, after every retry."""


class PioneerAuthError(PioneerError):
    """401/403: the key is missing, malformed or revoked."""

    hint = "Check the connection's API key (or the Variable named by extra api_key_variable)."


class PioneerPaymentRequiredError(PioneerError):
    """402: the account is out of credits; every call fails until it is topped up."""

    hint = "Top up the Pioneer account's credits; every call fails until then."


class PioneerNotFoundError(PioneerError):
    """404: unknown model or resource, or a model that is not deployed yet."""


class PioneerValidationError(PioneerError):
    """400/422: the request body failed validation.

    :param text_errors: ``{index: message}`` for the ``text`` entries the server blamed, when
        its FastAPI-style ``loc`` names them (``["body", "text", 3]``).
    """

    def __init__(self, message: str, *, text_errors: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.text_errors = dict(text_errors or {})

    @property
    def invalid_indices(self) -> tuple[int, ...]:
        """Indices of the blamed ``text`` entries, ascending."""
        return tuple(sorted(self.text_errors))


class PioneerRateLimitError(PioneerError):
    """429: the request rate limit; retried after ``Retry-After`` until the retry budget runs out."""


class PioneerSpendCapError(PioneerRateLimitError):
    """429 with ``X-RateLimit-Reason: daily_spend_cap_exceeded``: clears at 00:00 UTC, not by waiting."""

    hint = "The account's daily spend cap is reached; it resets at 00:00 UTC, or raise the cap."


class PioneerServerError(PioneerError):
    """5xx from Pioneer or a proxy in front of it, after every retry."""


class PioneerResponseError(PioneerError):
    """A response that is not what the API promises (a 2xx that is not JSON, a redirect, a wrong shape)."""
