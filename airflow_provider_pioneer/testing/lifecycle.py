"""The model lifecycle of the emulator: datasets, training jobs, evaluations (LIFECYCLE.md §2, §4-§6).

Time is simulated lazily: a record keeps when it was created and its status is worked out from
the elapsed (monotonic) time whenever it is read, so there are no background threads and the
durations (:class:`LifecycleSettings`) can be made tiny for tests. Where Pioneer's doc versions
disagree, a setting picks the variant, so the client can be tested against each of them:

* ``status_style``: ``"pioneer"`` sends the raw ``status`` only and ``stop`` ends in ``cancelled``
  (docs.pioneer.ai HEAD); ``"fastino"`` adds ``normalized_status``, ``is_terminal_status``,
  ``progress_percent``, ``is_deployable``... and ``stop`` ends in ``stopped`` (docs.fastino.ai);
* ``auto_deploy``: a completed job goes ``normalizing`` -> ``deployed`` by itself, or stays
  ``complete`` (``is_deployable``) until its checkpoint is deployed;
* ``deploy_style``: after that explicit deploy the job shows ``normalizing`` until it serves, or
  (``"deploying"``, the newer API) stays ``complete`` and ``is_deployable`` with a provider
  deployment ``deploying`` for ``deploy_warmup_s`` (default ``normalize_s``), then ``deployed``;
* ``list_page_max``: the most jobs one ``GET /felix/training-jobs`` page holds, whatever
  ``limit`` asked (a server paging below its documented 200);
* ``upload_url_field`` (``presigned_url`` / ``upload_url``), ``eval_shape`` (flat ``f1_score`` or
  nested ``metrics``), ``eval_create_shape`` (``evaluations`` list or a bare ``{id, status}``),
  ``list_key`` (``training_jobs`` / ``jobs``), ``fail_status`` (``failed`` / ``errored``).

Faults: ``fail_next_jobs`` jobs fail after ``fail_after_epochs`` epochs; ``running_status`` renames
the running state (an unknown state, as a doc drift would bring); ``eval_f1`` fixes evaluation F1.
Nothing here knows FastAPI; :func:`add_lifecycle_routes` in ``lifecycle_app.py`` serves it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.lifecycle_rows import validate_ner_rows
from airflow_provider_pioneer.testing.limits import retry_after

__all__ = ["TRAINABLE_MODELS", "LifecycleSettings", "LifecycleStore", "validate_ner_rows"]

#: Base models a job may fine-tune (a completed job's id also works: continued training).
TRAINABLE_MODELS = ("fastino/gliner2-base-v1", "fastino/gliner2-large-v1", "fastino/gliner2-multi-v1")
_STYLES = ("pioneer", "fastino")


@dataclass
class LifecycleSettings:
    """Durations (seconds of emulated time) and doc variants; see the module docstring.

    Defaults suit a demo (a job takes about 10 s); tests make them tiny.
    """

    dataset_process_s: float = 1.0
    queue_s: float = 1.0
    epoch_s: float = 0.8
    max_simulated_epochs: int = 10
    normalize_s: float = 2.0
    serve_warmup_s: float = 0.0
    eval_s: float = 2.0
    status_style: str = "pioneer"
    auto_deploy: bool = True
    deploy_style: str = "normalizing"
    deploy_warmup_s: float | None = None
    list_page_max: int | None = None
    idempotency: bool = True
    submit_per_minute: int | None = 20
    upload_url_field: str = "presigned_url"
    eval_shape: str = "nested"
    eval_create_shape: str = "list"
    list_key: str = "training_jobs"
    fail_status: str = "failed"
    fail_next_jobs: int = 0
    fail_after_epochs: int = 1
    running_status: str = "running"
    eval_f1: float | None = None
    training_cost_tokens: int = 1000
    feedback_shape: str = "verdict"
    logs_status: int | None = None

    def update(self, **changes: Any) -> None:
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown lifecycle settings {sorted(unknown)}; known: {sorted(known)}")
        for name, value in changes.items():
            setattr(self, name, value)
        if self.status_style not in _STYLES:
            raise ValueError(f"status_style must be one of {_STYLES}")
        if self.deploy_style not in ("normalizing", "deploying"):
            raise ValueError("deploy_style is 'normalizing' or 'deploying'")
        if self.upload_url_field not in ("presigned_url", "upload_url"):
            raise ValueError("upload_url_field must be 'presigned_url' or 'upload_url'")
        if self.eval_shape not in ("flat", "nested") or self.eval_create_shape not in ("list", "bare"):
            raise ValueError("eval_shape is 'flat' or 'nested'; eval_create_shape is 'list' or 'bare'")
        if self.feedback_shape not in ("verdict", "correction"):
            raise ValueError("feedback_shape is 'verdict' (OpenAPI) or 'correction' (the older history page)")
        if self.list_key not in ("training_jobs", "jobs") or self.fail_status not in ("failed", "errored"):
            raise ValueError("list_key is 'training_jobs' or 'jobs'; fail_status is 'failed' or 'errored'")


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass
class _Dataset:
    id: str
    name: str
    version: str
    dataset_type: str
    account_id: str
    created: float
    data: bytes | None = None
    processing_started: float | None = None
    size: int = 0
    labels: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def status(self, now: float, process_s: float) -> str:
        if self.processing_started is None:
            return "initialized"
        elapsed = now - self.processing_started
        if elapsed < process_s / 3:
            return "uploading"
        if elapsed < 2 * process_s / 3:
            return "converting"
        if elapsed < process_s:
            return "validating"
        return "failed" if self.errors else "ready"


@dataclass
class _Job:
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


@dataclass
class _Evaluation:
    id: str
    account_id: str
    model_id: str
    dataset_name: str
    created: float
    f1: float
    labels: list[str]


class LifecycleStore:
    """Datasets, training jobs and evaluations of one emulator (thread-safe, lazily simulated).

    :param base_url: how the presigned upload URLs start (set when the server knows its port).
    """

    def __init__(self) -> None:
        self.settings = LifecycleSettings()
        self.base_url = ""
        self._lock = threading.Lock()
        self._datasets: dict[str, list[_Dataset]] = {}  # by name, oldest version first
        self._uploads: dict[str, _Dataset] = {}  # by dataset id
        self._tokens: dict[str, str] = {}  # dataset id -> upload signature
        self._jobs: dict[str, _Job] = {}
        self._evaluations: dict[str, _Evaluation] = {}
        self._submits: dict[str, deque[float]] = {}  # account id -> submit times (last 60 s)
        self._idempotency: dict[tuple[str, str], tuple[str, str]] = {}  # (account, key) -> (body, job)
        self._inferences: dict[str, str] = {}  # inference id -> account id
        self.feedback: dict[str, dict[str, Any]] = {}  # inference id -> the feedback stored
        self.counters: Counter[str] = Counter()

    def configure(self, **changes: Any) -> dict[str, Any]:
        with self._lock:
            self.settings.update(**changes)
            return asdict(self.settings)

    def reset_counters(self) -> None:
        with self._lock:
            self.counters = Counter()

    def snapshot_counters(self) -> dict[str, Any]:
        with self._lock:
            return {
                **dict(self.counters),
                "jobs": {job.id: self._job_status(job, time.monotonic()) for job in self._jobs.values()},
            }

    # -- datasets ----------------------------------------------------------------------------------
    def upload_url(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("dataset_name")
        if not isinstance(name, str) or not name.strip():
            raise _invalid(("body", "dataset_name"), "Field required")
        kind = body.get("dataset_type") or "ner"
        if kind not in ("ner", "classification", "custom", "decoder"):
            raise _invalid(
                ("body", "dataset_type"), "Input should be 'ner', 'classification', 'custom' or 'decoder'"
            )
        if body.get("type") == "benchmark":
            raise AuthError(400, "Datasets of type 'benchmark' are system-managed")
        with self._lock:
            versions = self._datasets.setdefault(name, [])
            dataset = _Dataset(
                id=str(uuid.uuid4()), name=name, version=str(len(versions) + 1), dataset_type=kind,
                account_id=account_id, created=time.time(),
            )  # fmt: skip
            versions.append(dataset)
            self._uploads[dataset.id] = dataset
            token = self._tokens[dataset.id] = uuid.uuid4().hex
            self.counters["upload_urls"] += 1
        url = f"{self.base_url}/_presigned/{dataset.id}?X-Amz-Signature={token}"
        return {
            self.settings.upload_url_field: url,
            "dataset_id": dataset.id,
            "version_number": dataset.version,
        }

    def presigned_put(self, dataset_id: str, signature: str | None, data: bytes, has_auth: bool) -> None:
        """The S3-style PUT: signed by the URL alone; a request carrying credentials is refused."""
        with self._lock:
            self.counters["presigned_puts"] += 1
            if has_auth:
                # S3 refuses a presigned request that also carries an Authorization header.
                self.counters["presigned_puts_with_key"] += 1
                raise AuthError(400, "InvalidArgument: only one auth mechanism allowed")
            dataset = self._uploads.get(dataset_id)
            if dataset is None or signature != self._tokens.get(dataset_id):
                raise AuthError(403, "SignatureDoesNotMatch")
            dataset.data = data

    def process(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        dataset_id = body.get("dataset_id")
        with self._lock:
            dataset = self._uploads.get(str(dataset_id))
            if dataset is None or dataset.account_id != account_id:
                raise AuthError(404, f"Dataset upload {dataset_id} not found")
            if dataset.data is None:
                raise AuthError(400, "No file was uploaded to the presigned URL yet")
            if dataset.processing_started is None:
                dataset.processing_started = time.monotonic()
                if dataset.dataset_type == "ner":
                    dataset.size, dataset.errors, dataset.labels = validate_ner_rows(dataset.data)
                else:
                    dataset.size = len([ln for ln in dataset.data.splitlines() if ln.strip()])
                self.counters["datasets_processed"] += 1
            return {"status": "uploading", "dataset_id": dataset.id, "dataset_name": dataset.name,
                    "version_number": dataset.version}  # fmt: skip

    def _dataset_doc(self, d: _Dataset) -> dict[str, Any]:
        status = d.status(time.monotonic(), self.settings.dataset_process_s)
        doc: dict[str, Any] = {
            "id": d.id, "dataset_name": d.name, "version_number": d.version, "dataset_type": d.dataset_type,
            "size": d.size, "sample_size": d.size, "status": status, "created_at": _iso(d.created),
        }  # fmt: skip
        if status == "failed":
            doc["processing_error"] = "; ".join(d.errors[:5])
        return doc

    def dataset_versions(self, account_id: str, name: str) -> dict[str, Any]:
        with self._lock:
            versions = [d for d in self._datasets.get(name, []) if d.account_id == account_id]
            if not versions:
                raise AuthError(404, f"Dataset {name} not found")
            docs = [self._dataset_doc(d) for d in reversed(versions)]
            return {"success": True, "count": len(docs), "versions": docs}

    def _find_dataset(self, account_id: str, name: str, version: str | None) -> _Dataset | None:
        versions = [d for d in self._datasets.get(name, []) if d.account_id == account_id]
        if not versions:
            return None
        if version in (None, "", "latest"):
            return versions[-1]
        return next((d for d in versions if d.version == str(version)), None)

    def dataset(self, account_id: str, name: str, version: str) -> dict[str, Any]:
        with self._lock:
            d = self._find_dataset(account_id, name, version)
            if d is None:
                raise AuthError(404, f"Dataset {name} version {version} not found")
            return self._dataset_doc(d)

    def list_datasets(self, account_id: str, include_failed: bool) -> dict[str, Any]:
        with self._lock:
            docs = [
                self._dataset_doc(v[-1]) for v in self._datasets.values() if v[-1].account_id == account_id
            ]
            docs = [d for d in docs if include_failed or d["status"] != "failed"]
            return {"success": True, "count": len(docs), "datasets": docs}

    # -- training jobs -----------------------------------------------------------------------------
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
            job = _Job(
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

    @staticmethod
    def _is_terminal(status: str) -> bool:
        return status in ("complete", "deployed", "failed", "errored", "stopped", "cancelled", "terminated")

    def _timeline(self, job: _Job) -> tuple[float, float, float]:
        """Monotonic times when the job starts running, ends training and is deployed."""
        s = self.settings
        start = job.created + s.queue_s
        end = start + job.epochs * s.epoch_s
        return start, end, end + s.normalize_s

    def _epoch(self, job: _Job, now: float) -> int:
        start, end, _ = self._timeline(job)
        if now < start:
            return 0
        return min(job.epochs, int((now - start) / self.settings.epoch_s) + 1) if now < end else job.epochs

    def _failed_at(self, job: _Job) -> float | None:
        if job.fail_after is None:
            return None
        start, _, _ = self._timeline(job)
        return start + job.fail_after * self.settings.epoch_s + self.settings.epoch_s / 2

    def _job_status(self, job: _Job, now: float) -> str:
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

    def _logs(self, job: _Job, now: float) -> list[dict[str, Any]]:
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
            {"id": f"{job.id}-{i}", "job_id": job.id, "timestamp": _iso(at + wall), "level": level,
             "message": message, "source": "trainer"}
            for i, (at, level, message) in enumerate(lines)
        ]  # fmt: skip

    def _job_doc(self, job: _Job, now: float) -> dict[str, Any]:
        s = self.settings
        status = self._job_status(job, now)
        doc: dict[str, Any] = {
            "id": job.id, "status": status, "model_name": job.body.get("model_name"),
            "base_model": job.body.get("base_model"), "training_type": job.body.get("training_type", "lora"),
            "nr_epochs": job.body.get("nr_epochs", 100), "learning_rate": job.body.get("learning_rate"),
            "datasets": job.body.get("datasets"), "created_at": _iso(job.created_wall),
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
                normalized_status=_NORMALIZED.get(
                    status, "running" if status == s.running_status else status
                ),
                is_terminal_status=self._is_terminal(status),
                progress_percent=round(100 * epoch / job.epochs) if job.epochs else 0,
                current_epoch=epoch,
                error_message="CUDA out of memory" if status == s.fail_status else None,
                artifact_ready=status in ("complete", "normalizing", "deployed"),
                is_deployable=status in ("complete", "normalizing", "deployed"),
                deployability_reason=None if status in ("complete", "deployed") else "job_incomplete",
            )
        return doc

    def _with_deployment(self, job: _Job, doc: dict[str, Any], now: float) -> dict[str, Any]:
        """The newer API's view of an explicit deploy: the job stays deployable, its deployment warms."""
        if job.deployed_at is not None and self.settings.deploy_style == "deploying":
            doc["provider_deployments"] = {
                "fastino": {"status": "active" if now >= job.deployed_at else "deploying"}
            }
        return doc

    def _job(self, account_id: str, job_id: str) -> _Job:
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

    # -- inference feedback ------------------------------------------------------------------------
    def remember_inference(self, inference_id: str, account_id: str) -> None:
        with self._lock:
            self._inferences[inference_id] = account_id

    def post_feedback(self, account_id: str, inference_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /inferences/{id}/feedback`` in the configured shape: ``{verdict, corrected_output?, notes?}``
        (OpenAPI) or ``{correction}`` (the older history page)."""
        with self._lock:
            if self._inferences.get(inference_id) != account_id:
                raise AuthError(404, f"Inference {inference_id} not found")
            if self.settings.feedback_shape == "correction":
                if not isinstance(body.get("correction"), dict | list):
                    raise _invalid(("body", "correction"), "Field required")
                stored = {"human_verdict": "incorrect", "human_corrected_output": body["correction"]}
            else:
                verdict = body.get("verdict")
                if verdict not in ("correct", "incorrect"):
                    raise _invalid(("body", "verdict"), "Input should be 'correct' or 'incorrect'")
                if verdict == "incorrect" and body.get("corrected_output") is None:
                    raise _invalid(("body", "corrected_output"), "Required when verdict is 'incorrect'")
                notes = body.get("notes")
                if notes is not None and (not isinstance(notes, str) or len(notes) > 5000):
                    raise _invalid(("body", "notes"), "String should have at most 5000 characters")
                stored = {"human_verdict": verdict, "human_corrected_output": body.get("corrected_output"),
                          "human_feedback_notes": notes}  # fmt: skip
            stored["human_feedback_at"] = _iso(time.time())
            self.feedback[inference_id] = stored
            self.counters["feedback_posted"] += 1
            return {"inference_id": inference_id, "human_verdict": stored["human_verdict"],
                    "human_feedback_at": stored["human_feedback_at"]}  # fmt: skip

    # -- evaluations -------------------------------------------------------------------------------
    def evaluate(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        model = body.get("base_model") or body.get("model_id")
        if not isinstance(model, str) or not model:
            raise _invalid(("body", "base_model"), "Field required")
        name = body.get("dataset_name")
        with self._lock:
            now = time.monotonic()
            d = self._find_dataset(account_id, str(name), None) if name else None
            if d is None or d.status(now, self.settings.dataset_process_s) != "ready":
                raise AuthError(400, f"Dataset {name} is not ready (evaluations need a ready dataset)")
            job = self._jobs.get(model)
            if job is not None and self._job_status(job, now) not in ("complete", "normalizing", "deployed"):
                raise AuthError(400, f"Training job {model} has not completed")
            if job is None and model not in TRAINABLE_MODELS:
                raise AuthError(404, f"Model {model} not found")
            f1 = self.settings.eval_f1
            if f1 is None:
                f1 = 0.86 if job is not None else 0.52
            ev = _Evaluation(id=str(uuid.uuid4()), account_id=account_id, model_id=model, dataset_name=d.name,
                             created=now, f1=float(f1), labels=list(d.labels) or ["entity"])  # fmt: skip
            self._evaluations[ev.id] = ev
            self.counters["evaluations_submitted"] += 1
            item = {"id": ev.id, "model_id": model, "dataset_name": d.name, "status": "queued"}
            if self.settings.eval_create_shape == "bare":
                return {"id": ev.id, "status": "running"}
            return {"success": True, "count": 1, "evaluations": [item]}

    def evaluation(self, account_id: str, evaluation_id: str) -> dict[str, Any]:
        with self._lock:
            ev = self._evaluations.get(evaluation_id)
            if ev is None or ev.account_id != account_id:
                raise AuthError(404, f"Evaluation {evaluation_id} not found")
            elapsed = time.monotonic() - ev.created
            s = self.settings
            status = "queued" if elapsed < s.eval_s / 3 else "running" if elapsed < s.eval_s else "complete"
            doc: dict[str, Any] = {
                "id": ev.id,
                "status": status,
                "model_id": ev.model_id,
                "dataset_name": ev.dataset_name,
            }
            if status != "complete":
                return doc
            precision, recall = min(1.0, ev.f1 + 0.02), max(0.0, ev.f1 - 0.02)
            if s.eval_shape == "flat":
                doc.update(f1_score=ev.f1, precision_score=precision, recall_score=recall, sample_count=50,
                           completed_at=_iso(time.time()))  # fmt: skip
            else:
                per_entity = {
                    label: {"f1": round(ev.f1 - 0.01 * i, 4), "precision": precision, "recall": recall}
                    for i, label in enumerate(ev.labels)
                }
                doc["metrics"] = {
                    "f1": ev.f1,
                    "precision": precision,
                    "recall": recall,
                    "per_entity": per_entity,
                }
            return doc


_NORMALIZED = {
    "requested": "queued", "normalizing": "running", "complete": "completed", "deployed": "completed",
    "failed": "failed", "errored": "failed", "stopped": "stopped", "cancelled": "stopped", "terminated": "stopped",
}  # fmt: skip


def _canonical(body: dict[str, Any]) -> str:
    return json.dumps(body, sort_keys=True, default=str)


def _invalid(loc: tuple[str, ...], msg: str) -> AuthError:
    return AuthError(422, msg, body={"detail": [{"loc": list(loc), "msg": msg, "type": "missing"}]})
