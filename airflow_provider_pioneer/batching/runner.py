"""Send batches concurrently, isolate rejected texts, hand results back in input order.

A bounded window of batches is outstanding at any time (``window``, at most
``max_concurrency`` of them on the wire); results come back strictly in input order, so
memory stays flat and the output can be written as it arrives. A 422 on a batch is
split until the offending texts stand alone (the server's ``loc`` indices are used as a
shortcut); they become error records and their neighbours get results. A failure that
no retry can fix (402, spend cap, 401 after the key re-read, unknown model, options the
API rejects, an answer that is not what the API promises) stops every worker before its
next request and is raised to the caller as :class:`FatalStop`. A batch that still fails
after the client's retries (5xx, connection errors, a 429 storm, a 200 whose results are
null or malformed) stops the run the same way, as :class:`TransientStop`: its items get no
record, so a later attempt (an Airflow retry resuming from the checkpoint) sends them
again, instead of a passing outage being written down as permanent per-item failures.

A 413 (the body is too large, usually for a proxy) is isolated like a 422: the batch is
split until the texts that are too large stand alone, and they get error records.

Setting ``stop`` from outside (the operator's ``on_kill``) ends the run at once: no worker
sends again, and :meth:`BatchRunner.run` stops waiting for the requests on the wire and
raises :class:`RunStopped` after the batches that were already done in order.

A result that cannot be written as standard JSON (``NaN``, a lone surrogate) becomes an
error record for its text rather than a crash after the call was billed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from itertools import islice
from typing import Any

from airflow_provider_pioneer.batching.inputs import Item, json_problem
from airflow_provider_pioneer.exceptions import (
    PioneerError,
    PioneerPayloadTooLargeError,
    PioneerValidationError,
)
from airflow_provider_pioneer.pacing import Pacer

__all__ = [
    "BatchResult",
    "BatchRunner",
    "FatalStop",
    "RunStopped",
    "StoppablePacer",
    "TransientStop",
    "batches",
]

#: Sent once, only when a 422 names no text and nothing has succeeded yet: if even this is
#: rejected, the request's options (model, schema, threshold...) are at fault, not the texts.
PROBE_TEXT = "Pioneer"

#: ``infer(texts) -> (one result per text, token_usage)``.
InferFn = Callable[[list[str]], tuple[list[Any], int]]


class RunStopped(Exception):
    """Raised in a worker that was about to send after the run was stopped.

    :meth:`BatchRunner.run` raises it too when ``stop`` was set from outside (no error caused it).
    """


class FatalStop(Exception):
    """The run stopped on an error no retry fixes; ``error`` is the first such error."""

    def __init__(self, error: PioneerError) -> None:
        super().__init__(error.message)
        self.error = error


class TransientStop(FatalStop):
    """The run stopped because a batch kept failing after every client retry; a later attempt may succeed."""


class StoppablePacer(Pacer):
    """A :class:`Pacer` that refuses to let any request leave once ``stop`` is set.

    Installed as the client's pacer, it is checked right before every HTTP attempt
    (retries included), which is what makes "no request after the first 402" hold.
    Its waits return early when the run stops.
    """

    def __init__(self, requests_per_minute: float | None, stop: threading.Event) -> None:
        super().__init__(requests_per_minute, sleep=self.wait)
        self._stop = stop

    def wait(self, seconds: float) -> None:
        """Sleep ``seconds``; raise :class:`RunStopped` as soon as the run stops meanwhile."""
        if self._stop.wait(seconds):
            raise RunStopped

    def acquire(self, deadline: float | None = None) -> bool:
        if self._stop.is_set():
            raise RunStopped
        ok = super().acquire(deadline)
        if self._stop.is_set():
            raise RunStopped
        return ok


@dataclass
class BatchResult:
    """The records of one batch, in the batch's order, with what they cost."""

    items: list[Item]
    records: list[dict[str, Any]]
    tokens: int


def batches(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    """Consecutive batches of ``size`` items (the last may be shorter)."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


def _error(item: Item, status: int | None, message: str) -> dict[str, Any]:
    # A server's message may quote the text; whatever it holds, the record must stay writable.
    message = message.encode("utf-8", "backslashreplace").decode("utf-8")
    return {"id": item.id, "error": {"status": status, "message": message}}


def _record(item: Item, result: Any) -> dict[str, Any]:
    problem = json_problem(result)
    if problem is None:
        return {"id": item.id, "result": result}
    # Billed already: sending it again would most likely bill the same answer again.
    return _error(item, 200, f"Pioneer answered HTTP 200, but its result for this text {problem}")


def _is_request_level(exc: PioneerValidationError) -> bool:
    """A 422 that blames only request fields other than the texts (model_id, schema, threshold...)."""
    detail = exc.detail
    if not isinstance(detail, list) or not detail:
        return False
    locs = [entry.get("loc") for entry in detail if isinstance(entry, dict)]
    return bool(locs) and all(isinstance(loc, list) and len(loc) > 1 and "text" not in loc for loc in locs)


class BatchRunner:
    """Runs batches through ``infer`` on ``max_concurrency`` threads; see the module docstring.

    :param infer: sends one request for a list of texts.
    :param max_concurrency: worker threads (requests on the wire at most).
    :param window: batches outstanding at most (on the wire, queued, or done but waiting for
        an earlier batch); bounds memory and what a killed run has to re-send.
    :param stop: set to stop the run; shared with the client's :class:`StoppablePacer`.
    :param tick: seconds between ``on_tick`` calls while waiting.
    :param on_tick: called from the caller's thread at least every ``tick`` seconds.
    """

    def __init__(
        self,
        infer: InferFn,
        *,
        max_concurrency: int,
        window: int,
        stop: threading.Event,
        tick: float = 1.0,
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._infer = infer
        self._max_concurrency = max_concurrency
        self._window = max(window, max_concurrency)
        self._stop = stop
        self._tick = tick
        self._on_tick = on_tick
        self._fatal: PioneerError | None = None
        self._fatal_is_transient = False
        self._fatal_lock = threading.Lock()
        self._options_accepted = False  # a request with these options has succeeded
        self._options_rejected = False  # the probe was rejected too: the options are at fault
        self._probe_lock = threading.Lock()

    # -- worker side ---------------------------------------------------------------------------

    def _fail(self, exc: PioneerError, transient: bool = False) -> None:
        with self._fatal_lock:
            # A fatal error outranks an outage seen a moment earlier: retrying a run that is out
            # of credits (say) would only fail again.
            if self._fatal is None or (self._fatal_is_transient and not transient):
                self._fatal = exc
                self._fatal_is_transient = transient
        self._stop.set()

    def _stop_for(self, exc: PioneerError) -> RunStopped:
        # The error's class says whether it is an outage (an Airflow retry may succeed) or a verdict.
        self._fail(exc, transient=exc.transient)
        return RunStopped()

    def _send(self, items: list[Item], records: dict[int, dict[str, Any]]) -> int:
        """Results (or error records) for ``items`` into ``records``; returns the tokens billed."""
        if self._stop.is_set():
            raise RunStopped
        try:
            results, tokens = self._infer([it.text or "" for it in items])
        except PioneerValidationError as exc:
            rejected = exc
        except PioneerError as exc:
            # Retries are spent or pointless: stop. Unanswered items stay unsent, not failed.
            raise self._stop_for(exc) from None
        else:
            self._options_accepted = True
            for it, result in zip(items, results, strict=True):
                records[it.index] = _record(it, result)
            return tokens
        blamed, probe_tokens = self._blames_the_request(rejected)
        if blamed:
            raise self._stop_for(rejected) from None
        return self._isolate(items, records, rejected) + probe_tokens

    def _blames_the_request(self, exc: PioneerValidationError) -> tuple[bool, int]:
        """Is this 422 about the request's options rather than some of its texts?

        :return: the verdict, and the tokens a probe sent from this call was billed (else 0).
        """
        if _is_request_level(exc):
            return True, 0
        if exc.text_errors or self._options_accepted:
            return False, 0
        # A 422 that names no text (a plain-string detail, the legacy envelope, a bare 400) before
        # anything succeeded: one tiny probe tells a bad option from a bad text, instead of
        # bisecting every batch down to single texts that all fail the same way.
        with self._probe_lock:
            # One probe per run: the workers that met the same 422 meanwhile reuse its verdict.
            if self._options_accepted or self._options_rejected:
                return self._options_rejected, 0
            try:
                _, tokens = self._infer([PROBE_TEXT])
            except PioneerValidationError:
                self._options_rejected = True
                return True, 0
            except PioneerError as probe_error:
                raise self._stop_for(probe_error) from None
            self._options_accepted = True
            return False, tokens

    def _isolate(
        self, items: list[Item], records: dict[int, dict[str, Any]], exc: PioneerValidationError
    ) -> int:
        """A 422 on ``items``: find the texts it is about; everything else still gets a result."""
        if len(items) == 1:
            msg = exc.text_errors.get(0)
            if msg:
                text = f"Pioneer rejected this text (HTTP {exc.status}): {msg}"
            elif isinstance(exc, PioneerPayloadTooLargeError):
                text = (
                    f"Pioneer (or a proxy in front of it) refused this text alone as too large "
                    f"(HTTP {exc.status}); shorten or split it"
                )
            else:
                text = exc.message
            records[items[0].index] = _error(items[0], exc.status, text)
            return 0
        blamed = {i for i in exc.invalid_indices if 0 <= i < len(items)}
        if blamed and len(blamed) < len(items):
            # Shortcut: the server named the bad texts; the others are re-sent (and split again
            # should the server have named too few).
            for i in sorted(blamed):
                msg = exc.text_errors.get(i, "invalid text")
                records[items[i].index] = _error(
                    items[i], exc.status, f"Pioneer rejected this text (HTTP {exc.status}): {msg}"
                )
            parts = [[it for i, it in enumerate(items) if i not in blamed]]
        else:
            mid = len(items) // 2
            parts = [items[:mid], items[mid:]]
        return sum(self._send(part, records) for part in parts)

    def _process(self, batch: list[Item]) -> BatchResult:
        records: dict[int, dict[str, Any]] = {}
        sendable = []
        for it in batch:
            if it.problem is not None:
                records[it.index] = _error(it, None, f"not sent: {it.problem}")
            else:
                sendable.append(it)
        tokens = self._send(sendable, records) if sendable else 0
        return BatchResult(batch, [records[it.index] for it in batch], tokens)

    # -- caller side ---------------------------------------------------------------------------

    def run(self, work: Iterable[list[Item]]) -> Iterator[BatchResult]:
        """Yield each batch's :class:`BatchResult` in input order.

        :raises FatalStop: after the last batch that completed in order, when the run stopped
            on an error no retry fixes.
        :raises TransientStop: likewise, when a batch kept failing after the client's retries.
        """
        pending: deque[Future[BatchResult]] = deque()
        source = iter(work)
        executor = ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="pioneer-batch")
        exhausted = False
        try:
            while True:
                while not exhausted and len(pending) < self._window and not self._stop.is_set():
                    batch = next(source, None)
                    if batch is None:
                        exhausted = True
                    else:
                        pending.append(executor.submit(self._process, batch))
                if not pending:
                    break
                head = pending[0]
                while not wait([head], timeout=self._tick, return_when=FIRST_COMPLETED).done:
                    self._on_tick()
                    if self._stop.is_set() and self._fatal is None:
                        # Stopped from outside (on_kill): do not wait for the requests on the wire.
                        break
                if not head.done():
                    break
                self._on_tick()
                try:
                    result = head.result()
                except RunStopped:
                    break
                pending.popleft()
                # After a stop, batches that still complete in order are kept: what was done is saved.
                yield result
        finally:
            self._stop.set()  # also when the caller abandons the iteration: no worker sends again
            # Queued batches are dropped; a worker mid-request finishes it (or stops at its next send).
            executor.shutdown(wait=False, cancel_futures=True)
        if self._fatal is not None:
            raise (TransientStop if self._fatal_is_transient else FatalStop)(self._fatal)
        if pending or not exhausted:  # stopped from outside, maybe before the first batch
            raise RunStopped
