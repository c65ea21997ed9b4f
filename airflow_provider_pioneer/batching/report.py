"""What the inference operator reports about a run: the summary, its log lines, metrics, and errors.

The operator orchestrates; this says what happened, in the words the user acts on: how much is
saved and where the next attempt resumes, what to fix after a verdict, which items failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException

if TYPE_CHECKING:
    import logging

    from airflow.sdk import Context

    from airflow_provider_pioneer.batching.inputs import Source
    from airflow_provider_pioneer.batching.progress import Progress
    from airflow_provider_pioneer.batching.runner import FatalStop, TransientStop
    from airflow_provider_pioneer.batching.sinks import Sink

__all__ = ["RunReport"]


class RunReport:
    """The reporting of one inference run.

    :param log: the task's logger.
    :param output_path: the run's ``output_path`` (``None``: the records are the return value).
    :param model_id: the model asked for (named when it is the cause).
    :param conn_id: the Pioneer connection (named when the key is the cause).
    :param max_failed_ratio: share of items that may fail before the task fails.
    """

    def __init__(
        self,
        log: logging.Logger | Any,
        *,
        output_path: str | None,
        model_id: str,
        conn_id: str,
        max_failed_ratio: float,
    ) -> None:
        self.log = log
        self.output_path = output_path
        self.model_id = model_id
        self.conn_id = conn_id
        self.max_failed_ratio = max_failed_ratio

    def finish(
        self,
        sink: Sink,
        source: Source,
        skipped: int,
        stats: dict[str, Any],
        progress: Progress,
    ) -> dict[str, Any]:
        """The run's summary (the operator pushes it as XCom ``pioneer_summary``), logged in short lines."""
        counts = sink.counts
        total = source.total
        summary = {
            "total": total,
            "succeeded": counts.succeeded,
            "failed": counts.failed,
            "skipped_from_checkpoint": skipped,
            "duplicate_ids": source.duplicate_ids,
            "requests": stats.get("attempts", 0),
            "retries": stats.get("retries", 0),
            "rate_limited": stats.get("rate_limited", 0),
            "token_usage": counts.token_usage,
            "elapsed_s": round(progress.elapsed, 3),
            "items_per_s": round(progress.rate, 2),
            "output_path": str(self.output_path) if self.output_path else None,
        }
        # Short lines, each readable without scrolling sideways in the task log.
        pace = progress.pace()
        self.log.info(
            "Pioneer inference summary: %d/%d items written (%d succeeded, %d failed, %d from checkpoint).",
            counts.records,
            total,
            counts.succeeded,
            counts.failed,
            skipped,
        )
        self.log.info(
            "  time: %.1f s at %.1f items/s%s",
            progress.elapsed,
            progress.rate,
            f"; {pace}" if pace else "",
        )
        self.log.info(
            "  calls: %d requests, %d retries, %d x 429; %d tokens",
            summary["requests"],
            summary["retries"],
            summary["rate_limited"],
            counts.token_usage,
        )
        if source.duplicate_ids:
            self.log.info("  duplicate ids: %d inputs repeat an earlier id", source.duplicate_ids)
        self.log.info("  output: %s", summary["output_path"] or "the task's return value")
        return summary

    @staticmethod
    def emit_metrics(
        context: Context, sink: Sink, before: tuple[int, int, int], summary: dict[str, Any]
    ) -> None:
        """This attempt's work as metrics (``before``: what the checkpoint already held)."""
        from airflow_provider_pioneer.metrics import emit_inference, task_tags

        counts = sink.counts
        emit_inference(
            {
                "texts_succeeded": counts.succeeded - before[0],
                "texts_failed": counts.failed - before[1],
                "tokens": counts.token_usage - before[2],
                "requests": summary["requests"],
                "rate_limited": summary["rate_limited"],
            },
            task_tags(context),
        )

    def saved(self, sink: Sink, total: int, resumes: str) -> str:
        """How much is saved, and where ``resumes`` (the next attempt, an Airflow retry) starts."""
        done = sink.counts.records
        if self.output_path:
            return (
                f"{done} of {total} records are saved and checkpointed beside {self.output_path} "
                f"and {resumes} resumes there"
            )
        return f"{done} of {total} items were done (set output_path to keep partial work)"

    def stopped_error(self, stopped: BaseException, sink: Sink, total: int) -> AirflowException:
        """The exception execute() raises when the run stopped before every item had its record."""
        from airflow_provider_pioneer.batching.runner import FatalStop, TransientStop

        if isinstance(stopped, TransientStop):
            # An outage, not a verdict on the items: Airflow's retry resumes from the checkpoint.
            return AirflowException(self._transient_message(stopped, sink, total))
        if isinstance(stopped, FatalStop):
            return AirflowFailException(self._fatal_message(stopped, sink, total))
        # Stopped from outside: on_kill (the task was marked failed, timed out, or its worker stops).
        return AirflowException(
            "Stopped sending: Airflow stopped this task (marked failed, timed out, or its worker is "
            f"shutting down). {self.saved(sink, total, 'the next attempt')}; items not yet answered "
            "are sent again then."
        )

    def _transient_message(self, stopped: TransientStop, sink: Sink, total: int) -> str:
        return (
            f"Stopped sending: {stopped.error.message} (still failing after the connection's retries). "
            f"{self.saved(sink, total, 'an Airflow retry')}; items not yet answered are sent again then."
        )

    def _fatal_message(self, stopped: FatalStop, sink: Sink, total: int) -> str:
        err = stopped.error
        # Each error class says what to do (402, the spend cap and 401 carry it in their hint).
        todo = err.next_step(model_id=self.model_id, conn_id=self.conn_id)
        where = self.saved(sink, total, "the next attempt")
        reason = err.message.rstrip()
        if not reason.endswith((".", "?", "!")):
            reason += "."
        return f"Stopped sending: {reason} {todo}; {where}. No Airflow retry was attempted."

    def check_failures(self, sink: Sink, total: int) -> None:
        """Fail the task when more items failed than ``max_failed_ratio`` allows, naming the first."""
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

    @staticmethod
    def check_complete(sink: Sink, total: int) -> None:
        """Never a short (or long) output reported complete; the file sink refuses to publish one too."""
        if sink.counts.records != total:
            raise AirflowException(
                f"The run ended with {sink.counts.records} records for {total} inputs; this is a bug "
                "of the provider, please report it. Nothing was reported complete."
            )
