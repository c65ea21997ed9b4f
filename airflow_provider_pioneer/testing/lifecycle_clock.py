"""A training job's simulated time: its status, epoch, logs and record at any moment (LIFECYCLE.md §4).

Nothing runs in the background: each is worked out from the job's creation time and the
settings whenever it is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_pioneer.testing.lifecycle_base import LifecycleBase, iso

__all__ = ["NORMALIZED", "Job", "JobClock"]


@dataclass
class Job:
    id: str
    account_id: str
    body: dict[str, Any]
    created: float
    created_wall: float
    epochs: int
    fail_after: int | None = None
    stopped_at: float | None = None
    stop_status: str = "stopped"
    deployed_at: float | None = None  # explicit deploy (auto_deploy off)
    idempotency_key: str | None = None


NORMALIZED = {
    "requested": "queued", "normalizing": "running", "complete": "completed", "deployed": "completed",
    "failed": "failed", "errored": "failed", "stopped": "stopped", "cancelled": "stopped", "terminated": "stopped",
}  # fmt: skip


class JobClock(LifecycleBase):
    """How a job's state follows from the time (a part of ``LifecycleStore``)."""

    @staticmethod
    def _is_terminal(status: str) -> bool:
        return status in ("complete", "deployed", "failed", "errored", "stopped", "cancelled", "terminated")

    def _timeline(self, job: Job) -> tuple[float, float, float]:
        """Monotonic times when the job starts running, ends training and is deployed."""
        s = self.settings
        start = job.created + s.queue_s
        end = start + job.epochs * s.epoch_s
        return start, end, end + s.normalize_s

    def _epoch(self, job: Job, now: float) -> int:
        start, end, _ = self._timeline(job)
        if now < start:
            return 0
        return min(job.epochs, int((now - start) / self.settings.epoch_s) + 1) if now < end else job.epochs

    def _failed_at(self, job: Job) -> float | None:
        if job.fail_after is None:
            return None
        start, _, _ = self._timeline(job)
        return start + job.fail_after * self.settings.epoch_s + self.settings.epoch_s / 2

    def _job_status(self, job: Job, now: float) -> str:
        start, end, deployed = self._timeline(job)
        failed_at = self._failed_at(job)
        if job.stopped_at is not None and (failed_at is None or job.stopped_at < failed_at):
            return job.stop_status
        if failed_at is not None and now >= failed_at:
            return self.settings.fail_status
        if now < start:
            return "requested"
        if now < end:
            return self.settings.running_status
        if job.deployed_at is not None:
            if now >= job.deployed_at:
                return "deployed"
            return "complete" if self.settings.deploy_style == "deploying" else "normalizing"
        if not self.settings.auto_deploy:
            return "complete"
        if now < end + self.settings.normalize_s / 2:
            return "complete"
        return "normalizing" if now < deployed else "deployed"

    def _logs(self, job: Job, now: float) -> list[dict[str, Any]]:
        start, end, _ = self._timeline(job)
        failed_at = self._failed_at(job)
        stop = min(t for t in (now, job.stopped_at, failed_at) if t is not None)
        lines: list[tuple[float, str, str]] = [(job.created, "INFO", f"Job {job.id} queued")]
        if stop >= start:
            lines.append((start, "INFO", f"Training {job.body.get('base_model')} for {job.epochs} epochs"))
        for epoch in range(1, job.epochs + 1):
            at = start + epoch * self.settings.epoch_s
            if at > stop or (failed_at is not None and at > failed_at):
                break
            loss = round(1.0 / (epoch + 1), 4)
            lines.append(
                (at, "INFO", f"epoch {epoch}/{job.epochs} train_loss={loss} val_loss={round(loss * 1.1, 4)}")
            )
        if (
            failed_at is not None
            and now >= failed_at
            and (job.stopped_at is None or job.stopped_at >= failed_at)
        ):
            lines.append((failed_at, "ERROR", "CUDA out of memory: tried to allocate 2.00 GiB"))
            lines.append((failed_at, "ERROR", "Training failed; checkpoints up to the last epoch are kept"))
        elif job.stopped_at is not None and now >= job.stopped_at:
            lines.append((job.stopped_at, "WARNING", "Stop requested; training stopped"))
        elif now >= end:
            lines.append((end, "INFO", "Training complete; best checkpoint saved"))
        lines.sort(key=lambda item: item[0])
        wall = job.created_wall - job.created
        return [
            {"id": f"{job.id}-{i}", "job_id": job.id, "timestamp": iso(at + wall), "level": level,
             "message": message, "source": "trainer"}
            for i, (at, level, message) in enumerate(lines)
        ]  # fmt: skip

    def _job_doc(self, job: Job, now: float) -> dict[str, Any]:
        s = self.settings
        status = self._job_status(job, now)
        doc: dict[str, Any] = {
            "id": job.id, "status": status, "model_name": job.body.get("model_name"),
            "base_model": job.body.get("base_model"), "training_type": job.body.get("training_type", "lora"),
            "nr_epochs": job.body.get("nr_epochs", 100), "learning_rate": job.body.get("learning_rate"),
            "datasets": job.body.get("datasets"), "created_at": iso(job.created_wall),
        }  # fmt: skip
        # Like docs.fastino.ai's full record: the job's whole configuration comes back.
        doc["config"] = {k: v for k, v in job.body.items() if k not in doc}
        epoch = self._epoch(job, now)
        if epoch:
            loss = round(1.0 / (epoch + 1), 4)
            doc["metrics"] = {"final_training_loss": loss, "final_validation_loss": round(loss * 1.1, 4),
                              "best_validation_loss": round(loss * 1.1, 4)}  # fmt: skip
        if status in ("complete", "normalizing", "deployed"):
            doc["metrics"] = {**doc.get("metrics", {}), "f1": 0.86, "precision": 0.88, "recall": 0.84}
        if s.status_style == "fastino":
            doc.update(
                normalized_status=NORMALIZED.get(status, "running" if status == s.running_status else status),
                is_terminal_status=self._is_terminal(status),
                progress_percent=round(100 * epoch / job.epochs) if job.epochs else 0,
                current_epoch=epoch,
                error_message="CUDA out of memory" if status == s.fail_status else None,
                artifact_ready=status in ("complete", "normalizing", "deployed"),
                is_deployable=status in ("complete", "normalizing", "deployed"),
                deployability_reason=None if status in ("complete", "deployed") else "job_incomplete",
            )
        return doc

    def _with_deployment(self, job: Job, doc: dict[str, Any], now: float) -> dict[str, Any]:
        """The newer API's view of an explicit deploy: the job stays deployable, its deployment warms."""
        if job.deployed_at is not None and self.settings.deploy_style == "deploying":
            doc["provider_deployments"] = {
                "fastino": {"status": "active" if now >= job.deployed_at else "deploying"}
            }
        return doc
