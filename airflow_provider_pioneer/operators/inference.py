"""PioneerInferenceOperator: batch entity extraction at the API's rate limit, checkpointed, measured.

The operator orchestrates and reports; the work is in :mod:`airflow_provider_pioneer.batching`
(inputs, the concurrent batch runner with 422 bisection, the ordered output writer with its
checkpoint, progress lines).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import (
    PioneerAuthError,
    PioneerNotFoundError,
    PioneerValidationError,
)
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.links import PioneerModelLink

if TYPE_CHECKING:
    # The batching machinery is imported in execute(): a DAG file that only builds the
    # operator (every parse) does not pay for it.
    from airflow.sdk import Context

    from airflow_provider_pioneer.batching.inputs import Source
    from airflow_provider_pioneer.batching.output import Sink
    from airflow_provider_pioneer.batching.runner import FatalStop, TransientStop

__all__ = ["SUMMARY_XCOM_KEY", "PioneerInferenceOperator"]

#: XCom key of the run summary.
SUMMARY_XCOM_KEY = "pioneer_summary"
#: Pioneer's batch endpoints cap a request at 1,000 input strings.
MAX_BATCH_SIZE = 1000
_RETURN_LIST_WARN = 10_000


class PioneerInferenceOperator(BaseOperator):
    """Run Pioneer entity extraction over many texts, in batches, at the API's rate limit.

    Give the texts as ``texts`` (a list of strings or of records; an XComArg works) or as
    ``input_path`` (a JSONL file, any ``ObjectStoragePath`` URL, read as a stream). Each input
    gets one output record, in input order: ``{"id": ..., "result": ...}`` or
    ``{"id": ..., "error": {"status": ..., "message": ...}}``. Without ``output_path`` the
    records are the return value (small runs); with it they stream to JSONL there, the
    return value is the summary, and a retried or restarted task resumes where the last
    attempt stopped. The summary is pushed as XCom ``pioneer_summary`` either way.

    For dynamic task mapping give each shard its own ``output_path`` (e.g. template it with
    ``{{ ti.map_index }}``) and split ``requests_per_minute`` between shards that run at once,
    or cap them with an Airflow pool.

    :param model_id: base model id (``fastino/gliner2-base-v1``) or training job id. Templated.
    :param texts: list of strings, or of records with ``id_field`` and ``text_field``. Templated.
    :param input_path: JSONL file of records (or JSON strings), one per line. Templated.
    :param id_field: key of the id in a record (missing: the input's index).
    :param text_field: key of the text in a record.
    :param entities: entity labels, sugar for ``schema={"entities": entities}``. Templated.
    :param schema: the full Pioneer schema (``entities``, ``classifications``, ...). Templated.
    :param threshold: confidence threshold 0..1 (API default 0.5). Templated.
    :param include_confidence: add ``confidence`` to each entity (API default true).
    :param include_spans: add ``start``/``end`` to each entity (API default true).
    :param store: keep the calls in Pioneer's inference history (API default true).
    :param project_id: Pioneer project to attribute the calls to. Templated.
    :param output_path: JSONL output (``ObjectStoragePath`` URL); enables checkpoint and resume. Templated.
    :param batch_size: texts per request (1..1000).
    :param max_concurrency: requests in flight at once.
    :param requests_per_minute: client-side pace (slows down further on 429); Pioneer allows 1,200.
    :param max_failed_ratio: share of items that may fail before the task fails (0: none may).
    :param pioneer_conn_id: the Pioneer connection.
    :param progress_interval: seconds between progress lines in the task log.
    """

    template_fields: Sequence[str] = (
        "model_id",
        "texts",
        "input_path",
        "entities",
        "schema",
        "threshold",
        "project_id",
        "output_path",
    )
    template_fields_renderers = {"texts": "json", "schema": "json", "entities": "json"}
    operator_extra_links = (PioneerModelLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        model_id: str,
        texts: Any = None,
        input_path: str | None = None,
        id_field: str = "id",
        text_field: str = "text",
        entities: Any = None,
        schema: Any = None,
        threshold: float | str | None = None,
        include_confidence: bool | None = None,
        include_spans: bool | None = None,
        store: bool | None = None,
        project_id: str | None = None,
        output_path: str | None = None,
        batch_size: int = 64,
        max_concurrency: int = 8,
        requests_per_minute: float = 1200,
        max_failed_ratio: float = 0.0,
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        progress_interval: float = 15.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}.")
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}.")
        if not float(requests_per_minute) > 0:
            raise ValueError(f"requests_per_minute must be positive, not {requests_per_minute}.")
        if not 0.0 <= float(max_failed_ratio) <= 1.0:
            raise ValueError(f"max_failed_ratio must be within 0..1, not {max_failed_ratio}.")
        if entities is not None and schema is not None:
            raise ValueError(
                "Give entities or schema, not both (entities=[...] means schema={'entities': [...]})."
            )
        self.model_id = model_id
        self.texts = texts
        self.input_path = input_path
        self.id_field = id_field
        self.text_field = text_field
        self.entities = entities
        self.schema = schema
        self.threshold = threshold
        self.include_confidence = include_confidence
        self.include_spans = include_spans
        self.store = store
        self.project_id = project_id
        self.output_path = output_path
        self.batch_size = int(batch_size)
        self.max_concurrency = int(max_concurrency)
        self.requests_per_minute = float(requests_per_minute)
        self.max_failed_ratio = float(max_failed_ratio)
        self.pioneer_conn_id = pioneer_conn_id
        self.progress_interval = float(progress_interval)

    @cached_property
    def hook(self) -> PioneerHook:
        """One hook (one client, one pacer, one connection pool) shared by every worker thread."""
        return PioneerHook(
            self.pioneer_conn_id,
            requests_per_minute=self.requests_per_minute,
            pool_size=self.max_concurrency,
        )

    # -- checking what was rendered --------------------------------------------------------------

    def _request_schema(self) -> dict[str, Any] | list[Any]:
        if self.entities is not None:
            if (
                isinstance(self.entities, str)
                or not isinstance(self.entities, list | tuple)
                or not self.entities
            ):
                raise AirflowFailException(
                    f"entities must be a non-empty list of labels, e.g. ['person', 'organization'], "
                    f"not {type(self.entities).__name__}."
                )
            return {"entities": list(self.entities)}
        if isinstance(self.schema, dict | list) and self.schema:
            return self.schema
        raise AirflowFailException(
            "Give entities=[...] (labels to extract) or schema={'entities': [...], ...}."
        )

    def _options(self) -> dict[str, Any]:
        threshold = self.threshold
        if threshold is not None and threshold != "":
            try:
                threshold = float(threshold)
            except (TypeError, ValueError):
                raise AirflowFailException(
                    f"threshold must be a number in 0..1, not {threshold!r}."
                ) from None
            if not 0.0 <= threshold <= 1.0:
                raise AirflowFailException(f"threshold must be within 0..1, not {threshold}.")
        else:
            threshold = None
        options = {
            "threshold": threshold,
            "include_confidence": self.include_confidence,
            "include_spans": self.include_spans,
            "store": self.store,
            "project_id": self.project_id or None,
        }
        return {k: v for k, v in options.items() if v is not None}

    def _source(self) -> Source:
        from airflow_provider_pioneer.batching.inputs import FileSource, InputError, ListSource

        has_texts = self.texts is not None
        has_path = bool(self.input_path)
        if has_texts == has_path:
            raise AirflowFailException("Give exactly one of texts=[...] or input_path='<jsonl file>'.")
        try:
            if has_path:
                from airflow.sdk import ObjectStoragePath

                return FileSource(ObjectStoragePath(str(self.input_path)), self.id_field, self.text_field)
            return ListSource(self.texts, self.id_field, self.text_field)
        except InputError as exc:
            raise AirflowFailException(str(exc)) from None

    # -- the run ------------------------------------------------------------------------------------

    def execute(self, context: Context) -> Any:
        from airflow_provider_pioneer.batching.inputs import request_fingerprint
        from airflow_provider_pioneer.batching.output import FileSink, ListSink
        from airflow_provider_pioneer.batching.progress import Progress
        from airflow_provider_pioneer.batching.runner import (
            BatchRunner,
            FatalStop,
            StoppablePacer,
            TransientStop,
            batches,
        )

        model_id = str(self.model_id or "").strip()
        if not model_id:
            raise AirflowFailException("model_id is required, e.g. 'fastino/gliner2-base-v1' or a job id.")
        schema = self._request_schema()
        options = self._options()
        source = self._source()
        fingerprint = request_fingerprint(
            source.digest,
            model_id=model_id,
            schema=schema,
            options=options,
            id_field=self.id_field,
            text_field=self.text_field,
        )
        sink: Sink
        if self.output_path:
            from airflow.sdk import ObjectStoragePath

            sink = FileSink(ObjectStoragePath(str(self.output_path)), fingerprint, source.total)
        else:
            if source.total > _RETURN_LIST_WARN:
                self.log.warning(
                    "%d texts without output_path: every record goes to XCom. Set output_path for large runs.",
                    source.total,
                )
            sink = ListSink()
        skipped = sink.counts.records
        if isinstance(sink, FileSink) and sink.already_complete:
            self.log.info(
                "Output %s is already complete for this exact request (%d records): no API call made.",
                self.output_path,
                skipped,
            )
            summary = self._finish(context, sink, source.total, skipped, {}, 0.0, 0.0)
            self._check_failures(sink, source.total)
            return summary
        if skipped:
            self.log.info("Resuming from the checkpoint: %d of %d items already done.", skipped, source.total)

        stop = threading.Event()
        client = self.hook.client
        # Checked before every HTTP attempt: once the run stops, no request leaves.
        client.pacer = pacer = StoppablePacer(self.requests_per_minute, stop)
        # A worker in a retry backoff wakes up when the run stops (and its next send is refused),
        # so the task does not wait out a 20 s backoff before it can report.
        client.retry_sleep = pacer.wait
        progress = Progress(self.log, source.total, skipped, client.stats.snapshot, self.progress_interval)

        def infer(texts: list[str]) -> tuple[list[Any], int]:
            doc = self.hook.infer(texts, schema=schema, model_id=model_id, **options)
            return list(doc["result"]), int(doc.get("token_usage") or 0)

        runner = BatchRunner(
            infer,
            max_concurrency=self.max_concurrency,
            window=2 * self.max_concurrency,
            stop=stop,
            tick=min(1.0, self.progress_interval),
            on_tick=progress.maybe_log,
        )
        items = source.items()
        for _ in range(skipped):  # done by an earlier attempt
            next(items)
        try:
            for batch in runner.run(batches(items, self.batch_size)):
                sink.write(batch.records, batch.tokens)
                progress.advance(len(batch.items))
        except FatalStop as stopped:
            sink.close(complete=False)
            self._finish(
                context, sink, source.total, skipped, client.stats.snapshot(), progress.elapsed, progress.rate
            )
            if isinstance(stopped, TransientStop):
                # An outage, not a verdict on the items: Airflow's retry resumes from the checkpoint.
                raise AirflowException(self._transient_message(stopped, sink, source.total)) from None
            raise AirflowFailException(self._fatal_message(stopped, sink, source.total)) from None
        except BaseException:
            sink.close(complete=False)
            raise
        sink.close(complete=True)
        summary = self._finish(
            context, sink, source.total, skipped, client.stats.snapshot(), progress.elapsed, progress.rate
        )
        self._check_failures(sink, source.total)
        if isinstance(sink, ListSink):
            return sink.records
        return summary

    # -- reporting ----------------------------------------------------------------------------------

    def _finish(
        self,
        context: Context,
        sink: Sink,
        total: int,
        skipped: int,
        stats: dict[str, Any],
        elapsed: float,
        rate: float,
    ) -> dict[str, Any]:
        counts = sink.counts
        summary = {
            "total": total,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "skipped_from_checkpoint": skipped,
            "requests": stats.get("attempts", 0),
            "retries": stats.get("retries", 0),
            "rate_limited": stats.get("rate_limited", 0),
            "token_usage": counts.token_usage,
            "elapsed_s": round(elapsed, 3),
            "items_per_s": round(rate, 2),
            "output_path": str(self.output_path) if self.output_path else None,
        }
        context["ti"].xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        self.log.info(
            "Pioneer inference summary: %d/%d items written (%d succeeded, %d failed, %d from checkpoint) "
            "in %.1f s at %.1f items/s; %d requests, %d retries, %d x 429, %d tokens; output: %s",
            counts.records,
            total,
            counts.succeeded,
            counts.failed,
            skipped,
            elapsed,
            rate,
            summary["requests"],
            summary["retries"],
            summary["rate_limited"],
            counts.token_usage,
            summary["output_path"] or "the task's return value",
        )
        return summary

    def _saved(self, sink: Sink, total: int, resumes: str) -> str:
        done = sink.counts.records
        if self.output_path:
            return (
                f"{done} of {total} records are saved and checkpointed beside {self.output_path} "
                f"and {resumes} resumes there"
            )
        return f"{done} of {total} items were done (set output_path to keep partial work)"

    def _transient_message(self, stopped: TransientStop, sink: Sink, total: int) -> str:
        return (
            f"Stopped sending: {stopped.error.message} (still failing after the connection's retries). "
            f"{self._saved(sink, total, 'an Airflow retry')}; items not yet answered are sent again then."
        )

    def _fatal_message(self, stopped: FatalStop, sink: Sink, total: int) -> str:
        err = stopped.error
        # 402, the spend cap and 401 carry their own advice in err.message (the exception's hint).
        if isinstance(err, PioneerNotFoundError):
            todo = f"The model_id is {self.model_id!r}; then clear this task"
        elif isinstance(err, PioneerValidationError):
            todo = "Fix the request options (model_id, schema/entities, threshold...), then clear this task"
        elif isinstance(err, PioneerAuthError):
            todo = f"The connection is {self.pioneer_conn_id!r}; then clear this task"
        elif err.hint:
            todo = "Then clear this task"
        else:
            todo = "Fix the cause, then clear this task"
        where = self._saved(sink, total, "the next attempt")
        reason = err.message.rstrip()
        if not reason.endswith((".", "?", "!")):
            reason += "."
        return f"Stopped sending: {reason} {todo}; {where}. No Airflow retry was attempted."

    def _check_failures(self, sink: Sink, total: int) -> None:
        counts = sink.counts
        if not counts.failed or total == 0 or counts.failed / total <= self.max_failed_ratio:
            if counts.failed:
                self.log.warning("%d of %d items failed (within max_failed_ratio).", counts.failed, total)
            return
        shown = "; ".join(
            f"id={rec.get('id')!r}: {rec['error'].get('message')}" for rec in counts.first_errors[:3]
        )
        where = f"in {self.output_path}" if self.output_path else "in the records"
        raise AirflowFailException(
            f"{counts.failed} of {total} items failed ({100.0 * counts.failed / total:.2f}% > "
            f"max_failed_ratio {100.0 * self.max_failed_ratio:g}%). First errors: {shown}. "
            f"Every failed item has an 'error' record {where}; fix those inputs or raise max_failed_ratio."
        )
