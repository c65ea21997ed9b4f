"""Typed errors for the Pioneer provider, each carrying its own retry policy.

One class per failure class a caller handles differently, all under
:class:`PioneerError` (an ``AirflowException``) so ``except PioneerError``
catches everything this package raises about the API. Each carries the HTTP
``status``, the server's ``detail`` (already summarised and redacted, never a
key) and three answers that every caller used to work out for itself:

* ``retryable``: the client sends the call again (backoff, ``Retry-After``) within
  its retry budget and deadline;
* ``transient``: once the client's retries are spent, a later attempt may still
  succeed (an outage, a warming model): an operator stops with a retryable error
  and Airflow's retry resumes. ``False`` is a verdict: fail without Airflow retries;
* ``hint``: what the user should do, appended to the message.

Money errors (:class:`PioneerBillingError`) are verdicts that also mean "send
nothing more": every call fails the same way until someone acts.
"""

from __future__ import annotations

from typing import Any, ClassVar

from airflow_provider_pioneer._compat import AirflowException

__all__ = [
    "PioneerAuthError",
    "PioneerBillingError",
    "PioneerConfigurationError",
    "PioneerConnectionError",
    "PioneerCreditCeilingError",
    "PioneerError",
    "PioneerModelNotServableError",
    "PioneerModelWarmingError",
    "PioneerNotFoundError",
    "PioneerPayloadTooLargeError",
    "PioneerPaymentRequiredError",
    "PioneerRateLimitError",
    "PioneerRedirectError",
    "PioneerResponseError",
    "PioneerServerError",
    "PioneerSpendCapError",
    "PioneerValidationError",
    "fails_without_retries",
]


def _sentence(text: str) -> str:
    text = text.rstrip()
    return text if not text or text.endswith((".", "?", "!")) else text + "."


class PioneerError(AirflowException):
    """Base class of every error about the Pioneer API.

    :param message: short text that says what happened (the class's ``hint`` is appended).
    :param status: HTTP status of the response, or ``None`` when there was none.
    :param detail: the server's error detail, parsed from either error envelope (redacted).
    :param retry_after: seconds the server asked to wait, when it said so.
    :param code: the machine-readable error ``code`` of the body or headers, when one came.
    :param resolution_url: where the server says the user can fix it (billing pages), when given.
    """

    #: What the user should do about it; appended to the message.
    hint: ClassVar[str] = ""
    #: What to do before clearing a task that stopped on this error, when the hint does not say
    #: it all (:meth:`next_step`); ``{model_id}`` and ``{conn_id}`` name the task's.
    next_step_text: ClassVar[str] = ""
    #: After the client's retries, a later attempt may succeed: not a verdict on the request.
    transient: ClassVar[bool] = False
    _retried: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: Any = None,
        retry_after: float | None = None,
        code: str | None = None,
        resolution_url: str | None = None,
    ) -> None:
        text = message
        if resolution_url:
            text = f"{_sentence(text)} Resolve it at {resolution_url}"
        if self.hint:
            text = f"{_sentence(text)} {self.hint}"
        super().__init__(text)
        self.message = text
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        self.code = code
        self.resolution_url = resolution_url

    @property
    def retryable(self) -> bool:
        """The client sends the call again (within ``max_retries`` and the call's deadline)."""
        return self._retried

    def next_step(self, *, model_id: object = None, conn_id: object = None) -> str:
        """What the user does, then clears the task, after a batch stopped on this error.

        :param model_id: the task's model, named by the errors about models.
        :param conn_id: the task's connection, named by the errors about keys.
        """
        if self.next_step_text:
            return self.next_step_text.format(model_id=repr(model_id), conn_id=repr(conn_id))
        # With a hint, the message already says what to do.
        return "Then clear this task" if self.hint else "Fix the cause, then clear this task"

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

    transient = True


class PioneerAuthError(PioneerError):
    """401, or 403 without a billing code: the key is missing, malformed or revoked."""

    hint = "Check the connection's API key (or the Variable named by its extra key_variable)."
    next_step_text = "The connection is {conn_id}; then clear this task"


class PioneerBillingError(PioneerError):
    """Money: every call fails the same way until someone acts, so stop sending at once."""


class PioneerPaymentRequiredError(PioneerBillingError):
    """402 (``out_of_credits``, ``direct_model_requires_credits``): the account is out of credits."""

    hint = "Top up the Pioneer account's credits; every call fails until then."


class PioneerCreditCeilingError(PioneerBillingError):
    """403 with a billing ``code`` (``credit_ceiling_reached``, ``card_required``): about money, not the key."""

    hint = "Raise the account's overage ceiling or add a card in the Pioneer console; the key itself is fine."


class PioneerSpendCapError(PioneerBillingError):
    """Legacy 429 with ``X-RateLimit-Reason: daily_spend_cap_exceeded``: clears at 00:00 UTC, not by waiting."""

    hint = "The account's daily spend cap is reached; it resets at 00:00 UTC, or raise the cap."


class PioneerNotFoundError(PioneerError):
    """404: unknown model or resource, or a model that is not deployed yet."""

    next_step_text = "The model_id is {model_id}; then clear this task"


class PioneerModelNotServableError(PioneerError):
    """409: the model exists but cannot serve (on-demand provisioning unfinished, not deployable)."""

    hint = (
        "Check that model_id names a model that supports inference (GET /base-models: "
        "supports_inference), or that the training job is deployed; then retry the task."
    )
    next_step_text = "The model_id is {model_id}; then clear this task"


class PioneerModelWarmingError(PioneerError):
    """425 Too Early: the model's deployment is warming up; waited out after ``Retry-After``."""

    _retried = True
    transient = True
    hint = "The model is still warming up; a cold start of a fine-tuned model can take minutes."


class PioneerValidationError(PioneerError):
    """400/422: the request body failed validation.

    :param text_errors: ``{index: message}`` for the ``text`` entries the server blamed, when
        its FastAPI-style ``loc`` names them (``["body", "text", 3]``).
    """

    next_step_text = "Fix the request options (model_id, schema/entities, threshold...), then clear this task"

    def __init__(self, message: str, *, text_errors: dict[int, str] | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.text_errors = dict(text_errors or {})

    @property
    def invalid_indices(self) -> tuple[int, ...]:
        """Indices of the blamed ``text`` entries, ascending."""
        return tuple(sorted(self.text_errors))


class PioneerPayloadTooLargeError(PioneerValidationError):
    """413 (usually from a proxy): the request body is too large; smaller batches get through."""

    next_step_text = (
        "Even a one-text request was too large for Pioneer or a proxy in front of it: shrink "
        "the schema, or raise the proxy's body-size limit; then clear this task"
    )


class PioneerRateLimitError(PioneerError):
    """429: the request rate limit; retried after ``Retry-After`` until the retry budget runs out.

    ``code`` and :attr:`scope` carry the newer ``X-RateLimit-Code`` / ``X-RateLimit-Scope``.
    """

    _retried = True
    transient = True

    def __init__(self, message: str, *, scope: str | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.scope = scope


#: 5xx statuses worth another attempt (529: overloaded). 501, 505... are verdicts.
RETRIED_SERVER_STATUSES = frozenset({500, 502, 503, 504, 529})


class PioneerServerError(PioneerError):
    """5xx from Pioneer or a proxy in front of it (and a proxy's 408), after every retry."""

    transient = True

    @property
    def retryable(self) -> bool:
        return self.status in RETRIED_SERVER_STATUSES or self.status == 408


class PioneerResponseError(PioneerError):
    """A 2xx that is not what the API promises (not JSON, a wrong shape, null results).

    A server or proxy hiccup, not a verdict on the request: nothing is recorded for the items,
    and an Airflow retry sends them again.
    """

    transient = True


class PioneerRedirectError(PioneerResponseError):
    """A 3xx: never followed (the key would go to another host); the base URL must be fixed."""

    transient = False


def fails_without_retries(exc: PioneerError) -> bool:
    """The verdict mapping every waiting operator uses: True fails the task without Airflow retries.

    Money errors and every error that is not :attr:`~PioneerError.transient` (400, 401, 403, 404,
    409, 413, 422, a bad connection...) are verdicts: an Airflow retry would meet them again. An
    outage, a 429, a 5xx or a malformed answer is not: the task fails retryably.
    """
    return isinstance(exc, PioneerBillingError) or not exc.transient
