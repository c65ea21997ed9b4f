"""What a batch that stopped on an error tells the user to do: each error class says it
(``PioneerError.next_step``), not a ladder of ``isinstance`` checks in the operator's report."""

from __future__ import annotations

import pytest

from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerError,
    PioneerModelNotServableError,
    PioneerNotFoundError,
    PioneerPayloadTooLargeError,
    PioneerPaymentRequiredError,
    PioneerValidationError,
)


@pytest.mark.parametrize(
    ("error", "step"),
    [
        (PioneerNotFoundError, "The model_id is 'acme/ner'; then clear this task"),
        (PioneerModelNotServableError, "The model_id is 'acme/ner'; then clear this task"),
        (PioneerAuthError, "The connection is 'pioneer_eu'; then clear this task"),
        (PioneerValidationError, "Fix the request options (model_id, schema/entities, threshold...), then"),
        (PioneerPayloadTooLargeError, "Even a one-text request was too large"),  # not the 422's words
        (PioneerPaymentRequiredError, "Then clear this task"),  # its hint says what to do
        (PioneerError, "Fix the cause, then clear this task"),
    ],
)
def test_every_error_class_says_what_to_do_before_the_task_is_cleared(
    error: type[PioneerError], step: str
) -> None:
    assert (
        error("it failed", status=400).next_step(model_id="acme/ner", conn_id="pioneer_eu").startswith(step)
    )
