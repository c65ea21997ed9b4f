"""PioneerInferenceOperator: batch entity extraction at the API's rate limit, checkpointed, measured.

The operator orchestrates and reports; the work is in :mod:`airflow_provider_pioneer.batching`
(inputs, the concurrent batch runner with 422 bisection, the ordered output writer with its
checkpoint, progress lines).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.links import PioneerModelLink
from airflow_provider_pioneer.operators._inference_args import check_writable, request_options, request_schema

if TYPE_CHECKING:
    # The batching machinery is imported in execute(): a DAG file that only builds the
    # operator (every parse) does not pay for it.
    from airflow.sdk import Context

    from airflow_provider_pioneer.batching.inputs import Source
    from airflow_provider_pioneer.batching.output import Sink

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
    ``{{ ti.map_index }}``). Shards that run at once share the account's rate limit by
    themselves: the default pace adapts to the server's rate-limit headers and to 429s.

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
    :param requests_per_minute: optional ceiling on the pace. Default ``None``: start at
        Pioneer's documented 5,000/min and adapt to the account's budget (``X-RateLimit-*``
        headers, 429s), so concurrent tasks on one account divide it without tuning.
    :param max_failed_ratio: share of items that may fail before the task fails (0: none may).
    :param pioneer_conn_id: the Pioneer connection.
    :param progress_interval: seconds between progress lines in the task log.
    :param map_label: a name for this task instance, not sent anywhere; mapped shards show it in the UI
        instead of 0, 1, 2... with ``map_index_template="{{ task.map_label }}"``
        (e.g. ``expand_kwargs`` dicts carrying ``"map_label": "shard 2 · 10,000 texts"``).
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
        requests_per_minute: float | None = None,
        max_failed_ratio: float = 0.0,
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        progress_interval: float = 15.0,
        map_label: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= int(batch_size) <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}.")
        if int(max_concurrency) < 1:
            raise ValueError(f"max_concurrency must be at least 1, not {max_concurrency}.")
        if requests_per_minute is not None and not float(requests_per_minute) > 0:
            raise ValueError(
                f"requests_per_minute must be positive (or None to adapt by itself), not {requests_per_minute}."
            )
        if not 0.0 <= float(max_failed_ratio) <= 1.0:
            raise ValueError(f"max_failed_ratio must be within 0..1, not {max_failed_ratio}.")
        if entities is not None and schema is not None:
            raise ValueError(
                "Give entities or schema, not both (entities=[...] means schema={'entities': [...]})."
            )
        self.model_id = model_id
        self.texts = texts
        self.input_path = input_path
        # Given but rendered to nothing (an upstream task that returned None) reads differently
        # from not given at all.
        self._texts_given = texts is not None
        self._input_path_given = bool(input_path)
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
        self.requests_per_minute = None if requests_per_minute is None else float(requests_per_minute)
        self.max_failed_ratio = float(max_failed_ratio)
        self.pioneer_conn_id = pioneer_conn_id
        self.progress_interval = float(progress_interval)
        self.map_label = map_label

    @cached_property
    def stop_event(self) -> threading.Event:
        """Set once the run must stop sending (a verdict, an outage, or Airflow killing the task)."""
        return threading.Event()

    @cached_property
    def hook(self) -> PioneerHook:
        """One hook (one client, one pacer, one connection pool) shared by every worker thread.

        Its pacer is checked right before every HTTP attempt and ends retry waits, so once the run
        stops no request leaves and no worker sleeps out a backoff.
        """
        from airflow_provider_pioneer.batching.runner import StoppablePacer

        return PioneerHook(
            self.pioneer_conn_id,
            pool_size=self.max_concurrency,
            pacer=StoppablePacer(self.requests_per_minute, self.stop_event),
        )

    # -- checking what was rendered --------------------------------------------------------------

    def _source(self) -> Source:
        from airflow_provider_pioneer.batching.inputs import FileSource, InputError, ListSource

        has_texts = self.texts is not None
        has_path = bool(self.input_path)
        if not has_texts and not has_path:
            if self._texts_given:
                # An XComArg or a template that rendered to None: the upstream task returned nothing.
                raise AirflowFailException(
                    "texts resolved to None: the upstream task that feeds it returned nothing, or its "
                    "XCom is missing (a different task_id or key, or do_xcom_push=False). Make that task "
                    "return the list of texts or records (return it, do not print it), then clear both tasks."
                )
            if self._input_path_given:
                raise AirflowFailException(
                    "input_path rendered to an empty value: check the template or params that fill it "
                    "(e.g. run with conf {'input_path': 's3://bucket/in.jsonl'})."
                )
        if has_texts == has_path:
            raise AirflowFailException("Give exactly one of texts=[...] or input_path='<jsonl file>'.")
        try:
            if has_path:
                from airflow.sdk import ObjectStoragePath

                return FileSource(ObjectStoragePath(str(self.input_path)), self.id_field, self.text_field)
            return ListSource(self.texts, self.id_field, self.text_field)
        except InputError as exc:
            raise AirflowFailException(str(exc)) from None

    def _sink(self, context: Context, total: int, fingerprint: str) -> Sink:
        from airflow_provider_pioneer.batching.output import FileSink, ListSink, Owner

        if self.output_path:
            from airflow.sdk import ObjectStoragePath

            # The owner (this task instance and try) holds a lease on the output, so a second
            # task given the same output_path fails instead of overwriting it.
            return FileSink(
                ObjectStoragePath(str(self.output_path)),
                fingerprint,
                total,
                owner=Owner.from_context(context),
            )
        if total > _RETURN_LIST_WARN:
            self.log.warning(
                "%d texts without output_path: every record goes to XCom. Set output_path for large runs.",
                total,
            )
        return ListSink()

    def _warn_duplicates(self, source: Source) -> None:
        from airflow_provider_pioneer.batching.inputs import DUPLICATE_CHECK_LIMIT

        if source.duplicate_ids:
            shown = ", ".join(repr(i) for i in source.first_duplicates)
            self.log.warning(
                "%d inputs repeat an id seen earlier (first: %s). Each input still gets its own record, "
                "in input order; a join on the id downstream sees these ids more than once.",
                source.duplicate_ids,
                shown,
            )
        if not source.duplicates_checked_all:
            self.log.info(
                "Ids were checked for duplicates up to the first %s distinct ids only.",
                f"{DUPLICATE_CHECK_LIMIT:,}",
            )

    # -- the run ------------------------------------------------------------------------------------

    def on_kill(self) -> None:
        """Airflow is stopping the task (marked failed, execution timeout): stop sending at once.

        Only sets the stop event (this may run in a signal handler): no worker sends again, the
        run stops waiting for requests on the wire, and execute() checkpoints what is done.
        """
        self.stop_event.set()

    def execute(self, context: Context) -> Any:
        from airflow_provider_pioneer.batching.inputs import InputError, request_fingerprint
        from airflow_provider_pioneer.batching.output import ListSink
        from airflow_provider_pioneer.batching.progress import Progress
        from airflow_provider_pioneer.batching.report import RunReport
        from airflow_provider_pioneer.batching.runner import BatchRunner, FatalStop, RunStopped, batches

        model_id = str(self.model_id or "").strip()
        if not model_id:
            raise AirflowFailException("model_id is required, e.g. 'fastino/gliner2-base-v1' or a job id.")
        schema = request_schema(self.entities, self.schema)
        options = request_options(
            self.threshold,
            include_confidence=self.include_confidence,
            include_spans=self.include_spans,
            store=self.store,
            project_id=self.project_id,
        )
        check_writable({"model_id": model_id, "schema" if self.schema else "entities": schema, **options})
        report = RunReport(
            self.log,
            output_path=self.output_path,
            model_id=self.model_id,
            conn_id=self.pioneer_conn_id,
            max_failed_ratio=self.max_failed_ratio,
        )
        source = self._source()
        self._warn_duplicates(source)
        fingerprint = request_fingerprint(
            source.digest,
            model_id=model_id,
            schema=schema,
            options=options,
            id_field=self.id_field,
            text_field=self.text_field,
        )
        sink = self._sink(context, source.total, fingerprint)
        # The checkpoint's parts are checked against the inputs here (ids at their positions): the
        # items it covers are consumed, and any it cannot vouch for come back to be sent again.
        try:
            items = sink.skip_done(source.items())
        except BaseException as exc:
            sink.close(complete=False)  # releases the lease; the checkpoint stays as it was
            if isinstance(exc, InputError):
                raise AirflowException(str(exc)) from None
            raise
        skipped = sink.counts.records
        # What the checkpoint already held: metrics count only this attempt's work.
        before = (sink.counts.succeeded, sink.counts.failed, sink.counts.token_usage)
        already_complete = bool(getattr(sink, "already_complete", False))
        if already_complete:
            self.log.info(
                "Output %s is already complete for this exact request (%d records): no API call made.",
                self.output_path,
                skipped,
            )
        elif skipped:
            self.log.info("Resuming from the checkpoint: %d of %d items already done.", skipped, source.total)

        # The client (and its connection) is made only when there is something to send.
        client = None if already_complete else self.hook.client
        stats = client.stats.snapshot if client else dict
        pace = self._pace_reader(client)
        held_for = getattr(getattr(client, "pacer", None), "held_for", None)
        progress = Progress(
            self.log,
            source.total,
            skipped,
            stats,
            self.progress_interval,
            pace=pace,
            hold=held_for if callable(held_for) else (lambda: 0.0),
        )

        def infer(texts: list[str]) -> tuple[list[Any], int]:
            doc = self.hook.infer(texts, schema=schema, model_id=model_id, **options)
            return list(doc["result"]), int(doc.get("token_usage") or 0)

        stopped: BaseException | None = None
        complete = False
        try:
            if not already_complete:
                runner = BatchRunner(
                    infer,
                    max_concurrency=self.max_concurrency,
                    window=2 * self.max_concurrency,
                    stop=self.stop_event,
                    tick=min(1.0, self.progress_interval),
                    on_tick=progress.maybe_log,
                )
                for batch in runner.run(batches(items, self.batch_size)):
                    sink.write(batch.records, batch.tokens)
                    progress.advance(len(batch.items))
            complete = True
        except (FatalStop, RunStopped) as exc:
            stopped = exc
        except InputError as exc:  # the input file changed under the run: nothing is published
            stopped = AirflowException(str(exc))
        finally:
            # Always, whatever ended the run (a verdict, an outage, a kill, an execution_timeout
            # raised from inside the loop): the checkpoint then holds exactly what is written, and
            # a later attempt resumes there; the summary, the metrics and the Pioneer view report
            # what this attempt did.
            sink.close(complete=complete)
            summary = report.finish(sink, source, skipped, stats(), progress)
            context["ti"].xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
            report.emit_metrics(context, sink, before, summary)
        if isinstance(stopped, AirflowException):
            raise stopped
        if stopped is not None:
            raise report.stopped_error(stopped, sink, source.total)
        report.check_complete(sink, source.total)
        report.check_failures(sink, source.total)
        return sink.records if isinstance(sink, ListSink) else summary

    @staticmethod
    def _pace_reader(client: Any) -> Callable[[], str | None]:
        """What the progress lines say about the pace: the pacer's own words, else its current rate."""
        pacer = getattr(client, "pacer", None)
        describe = getattr(pacer, "describe", None)
        if callable(describe):
            return lambda: str(describe())

        def rate() -> str | None:
            per_minute = getattr(pacer, "rate_per_minute", None)
            return f"pace {per_minute:,.0f}/min" if per_minute else None

        return rate

    # -- lineage ------------------------------------------------------------------------------------

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """Input and output files as OpenLineage datasets, the model as the ``pioneer`` run facet.

        Called by the OpenLineage provider's listener when it is installed; ``None`` without it.
        """
        from airflow_provider_pioneer.lineage import operator_lineage

        return operator_lineage(self.input_path, self.output_path, self.model_id)
