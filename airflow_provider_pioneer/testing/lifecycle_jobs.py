"""The emulator's training jobs: submit (validation, idempotency, rate limit), read, list, stop,
checkpoints, deploy, and whether a job's model serves (LIFECYCLE.md §4-§5)."""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from typing import Any

from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.lifecycle_base import TRAINABLE_MODELS
from airflow_provider_pioneer.testing.lifecycle_clock import Job, JobClock
from airflow_provider_pioneer.testing.lifecycle_datasets import DatasetRoom
from airflow_provider_pioneer.testing.limits import retry_after

__all__ = ["JobRoom"]


class JobRoom(JobClock, DatasetRoom):
    """Training jobs of a lifecycle store (a part of ``LifecycleStore``)."""

    def submit(
        self, account_id: str, body: dict[str, Any], idempotency_key: str | None
    ) -> tuple[int, dict[str, Any]]:
        """``POST /felix/training-jobs``: (status code, job record)."""
        s = self.settings
        errors = []
        if not isinstance(body.get("base_model"), str) or not body["base_model"]:
            errors.append({"loc": ["body", "base_model"], "msg": "Field required", "type": "missing"})
        datasets = body.get("datasets")
        if (
            not isinstance(datasets, list)
            or not datasets
            or not all(isinstance(d, dict) and isinstance(d.get("name"), str) for d in datasets)
        ):
            errors.append(
                {"loc": ["body", "datasets"], "msg": "A list of {name, version?}", "type": "value_error"}
            )
        if body.get("training_type") not in (None, "lora", "full"):
            errors.append(
                {"loc": ["body", "training_type"], "msg": "Input should be 'lora' or 'full'", "type": "enum"}
            )
        epochs = body.get("nr_epochs", 100)
        if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
            errors.append(
                {
                    "loc": ["body", "nr_epochs"],
                    "msg": "Input should be an integer >= 1",
                    "type": "value_error",
                }
            )
        if errors:
            raise AuthError(422, "invalid training job", body={"detail": errors})
        with self._lock:
            now = time.monotonic()
            if idempotency_key and s.idempotency:
                seen = self._idempotency.get((account_id, idempotency_key))
                if seen is not None:
                    return self._replay(seen, body, now)
            base = body["base_model"]
            known_job = self._jobs.get(base)
            if base not in TRAINABLE_MODELS and not (
                known_job is not None and self._job_status(known_job, now) in ("complete", "deployed")
            ):
                raise AuthError(
                    400, f"Model {base} is not trainable; see GET /base-models?supports_training=true"
                )
            for ref in datasets or []:
                d = self._find_dataset(account_id, ref["name"], ref.get("version"))
                if d is None:
                    raise AuthError(404, f"Dataset {ref['name']} not found")
                if d.status(now, s.dataset_process_s) != "ready":
                    raise AuthError(
                        400, f"Dataset {ref['name']} is not ready (training needs status 'ready')"
                    )
            self._admit_submit(account_id, now)
            fail_after = None
            if s.fail_next_jobs > 0:
                s.fail_next_jobs -= 1
                fail_after = max(0, int(s.fail_after_epochs))
            job = Job(
                id=str(uuid.uuid4()), account_id=account_id, body=dict(body), created=now, created_wall=time.time(),
                epochs=min(int(epochs), s.max_simulated_epochs), fail_after=fail_after,
                stop_status="cancelled" if s.status_style == "pioneer" else "stopped",
                idempotency_key=idempotency_key,
            )  # fmt: skip
            job.body.setdefault("model_name", f"model-{job.id[:8]}")
            self._jobs[job.id] = job
            if idempotency_key and s.idempotency:
                self._idempotency[(account_id, idempotency_key)] = (_canonical(body), job.id)
            self.counters["jobs_submitted"] += 1
            return 200, self._job_doc(job, now)

    def _replay(self, seen: tuple[str, str], body: dict[str, Any], now: float) -> tuple[int, dict[str, Any]]:
        canonical, job_id = seen
        if canonical != _canonical(body):
            raise AuthError(
                422, "Idempotency-Key was already used with a different body",
                body={"error": {"code": "idempotency_key_reused", "message": "Idempotency-Key reused with another body"}},
            )  # fmt: skip
        job = self._jobs.get(job_id)
        if job is None:
            raise AuthError(
                409,
                "deleted",
                body={
                    "error": {
                        "code": "idempotency_key_job_deleted",
                        "message": "The job this key created was deleted",
                    }
                },
            )
        self.counters["idempotent_replays"] += 1
        if not self._is_terminal(self._job_status(job, now)):
            raise AuthError(
                409, "duplicate",
                body={"error": {"code": "duplicate_training_submission", "message": "An identical job is still active",
                                "job_id": job.id}, "job_id": job.id},
            )  # fmt: skip
        return 200, self._job_doc(job, now)

    def _admit_submit(self, account_id: str, now: float) -> None:
        limit = self.settings.submit_per_minute
        log = self._submits.setdefault(account_id, deque())
        while log and log[0] <= now - 60.0:
            log.popleft()
        if limit is not None and len(log) >= limit:
            self.counters["submits_rate_limited"] += 1
            wait = log[0] + 60.0 - now
            raise AuthError(
                429, "Rate limit exceeded: 20 training jobs per minute",
                {"Retry-After": retry_after(wait), "X-RateLimit-Scope": "training-jobs", "X-RateLimit-Code": "rate_limited"},
                body={"detail": "Rate limit exceeded", "code": "rate_limited", "scope": "training-jobs"},
            )  # fmt: skip
        log.append(now)

    def _job(self, account_id: str, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None or job.account_id != account_id:
            raise AuthError(404, f"Training job {job_id} not found")
        return job

    def job(self, account_id: str, job_id: str) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            job = self._job(account_id, job_id)
            return self._with_deployment(job, self._job_doc(job, now), now)

    def job_logs(self, account_id: str, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(account_id, job_id)
            if self.settings.logs_status is not None:  # a deployment without the log route, or a broken one
                raise AuthError(int(self.settings.logs_status), "Training logs are unavailable")
            logs = self._logs(job, time.monotonic())
            return {"job_id": job.id, "logs": logs, "total_logs": len(logs)}

    def list_jobs(self, account_id: str, status: str | None, limit: int, offset: int) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            docs = [
                self._job_doc(j, now) for j in reversed(self._jobs.values()) if j.account_id == account_id
            ]
            if status:
                docs = [d for d in docs if d["status"] == status]
            if self.settings.list_page_max is not None:
                limit = min(limit, self.settings.list_page_max)
            page = docs[offset : offset + limit]
            key = self.settings.list_key
            return {"success": True, key: page, "count": len(page), "total": len(docs),
                    "has_more": offset + len(page) < len(docs)}  # fmt: skip

    def stop(self, account_id: str, job_id: str) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            job = self._job(account_id, job_id)
            status = self._job_status(job, now)
            if self._is_terminal(status) or status == "normalizing":
                raise AuthError(
                    409, "already finished",
                    body={"error": {"code": "training_job_already_finished", "message": f"Job is {status}"},
                          "detail": f"Training job already finished ({status})"},
                )  # fmt: skip
            job.stopped_at = now
            self.counters["jobs_stopped"] += 1
            return {
                "success": True,
                "message": "Training job stopped",
                "job_id": job.id,
                "status": job.stop_status,
            }

    def checkpoints(self, account_id: str, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self._job(account_id, job_id)
            done = self._job_status(job, time.monotonic()) in ("complete", "normalizing", "deployed")
            items = [{"id": f"{job.id}-final", "job_id": job.id, "epoch": job.epochs, "is_deployable": done,
                      "is_best": True, "is_final": True}] if done else []  # fmt: skip
            return {"success": True, "checkpoints": items, "count": len(items)}

    def deploy(self, account_id: str, job_id: str, checkpoint_id: str) -> dict[str, Any]:
        with self._lock:
            now = time.monotonic()
            job = self._job(account_id, job_id)
            if checkpoint_id != f"{job.id}-final":
                raise AuthError(404, f"Checkpoint {checkpoint_id} not found")
            if self._job_status(job, now) != "complete":
                raise AuthError(409, "Checkpoint is not deployable (job_incomplete)")
            self.counters["deploys"] += 1
            if job.deployed_at is None:  # a second deploy of the same checkpoint: paid for, changes nothing
                warmup = self.settings.deploy_warmup_s
                job.deployed_at = now + (self.settings.normalize_s if warmup is None else warmup)
            return {"success": True, "message": "Checkpoint deployed", "job_id": job.id,
                    "checkpoint_id": checkpoint_id, "mme_path": f"mme/{job.id}"}  # fmt: skip

    def check_servable(self, model_id: str) -> None:
        """``/inference`` with a training job id: 404 before training ends, 409 until deployed, 425 warming."""
        with self._lock:
            job = self._jobs.get(model_id)
            if job is None:
                return
            now = time.monotonic()
            status = self._job_status(job, now)
            if status not in ("complete", "normalizing", "deployed"):
                raise AuthError(404, f"Model {model_id} not found or not yet deployed (job is {status})")
            if status != "deployed":
                raise AuthError(
                    409, f"Model {model_id} exists but is not servable yet: deployment unfinished"
                )
            _, _, deployed = self._timeline(job)
            ready = (job.deployed_at or deployed) + self.settings.serve_warmup_s
            if now < ready:
                raise AuthError(
                    425, f"Model {model_id} is warming up", {"Retry-After": retry_after(ready - now)}
                )
            self.counters["inference_on_jobs"] += 1


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, default=str)
