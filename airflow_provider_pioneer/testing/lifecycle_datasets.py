"""The emulator's datasets: presigned upload, processing and validation, versions (LIFECYCLE.md §2)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_pioneer.testing.errors import AuthError
from airflow_provider_pioneer.testing.lifecycle_base import LifecycleBase, invalid, iso
from airflow_provider_pioneer.testing.lifecycle_rows import validate_ner_rows

__all__ = ["Dataset", "DatasetRoom"]


@dataclass
class Dataset:
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


class DatasetRoom(LifecycleBase):
    """Datasets of a lifecycle store (a part of ``LifecycleStore``)."""

    def upload_url(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("dataset_name")
        if not isinstance(name, str) or not name.strip():
            raise invalid(("body", "dataset_name"), "Field required")
        kind = body.get("dataset_type") or "ner"
        if kind not in ("ner", "classification", "custom", "decoder"):
            raise invalid(
                ("body", "dataset_type"), "Input should be 'ner', 'classification', 'custom' or 'decoder'"
            )
        if body.get("type") == "benchmark":
            raise AuthError(400, "Datasets of type 'benchmark' are system-managed")
        with self._lock:
            versions = self._datasets.setdefault(name, [])
            dataset = Dataset(
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

    def _dataset_doc(self, d: Dataset) -> dict[str, Any]:
        status = d.status(time.monotonic(), self.settings.dataset_process_s)
        doc: dict[str, Any] = {
            "id": d.id, "dataset_name": d.name, "version_number": d.version, "dataset_type": d.dataset_type,
            "size": d.size, "sample_size": d.size, "status": status, "created_at": iso(d.created),
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

    def _find_dataset(self, account_id: str, name: str, version: str | None) -> Dataset | None:
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
