"""PioneerDatasetUploadOperator: a JSONL file from any ObjectStoragePath into a ready Pioneer dataset."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.log import mask_secret

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.exceptions import PioneerError
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators._lifecycle_common import as_seconds, fail_for

if TYPE_CHECKING:
    from datetime import timedelta

    from airflow.sdk import Context

    from airflow_provider_pioneer.operators._task_record import TaskRecord

__all__ = ["PioneerDatasetUploadOperator"]

_READY, _FAILED = "ready", "failed"


class PioneerDatasetUploadOperator(BaseOperator):
    """Upload a labelled JSONL file as a Pioneer dataset and wait until it is ``ready``.

    Every row is checked first (NER: ``{"text", "entities": [[span, label], ...]}`` with each span
    inside its text); a file with bad rows is refused before anything is sent, naming the lines.
    Then the three-step upload: ask for an upload URL, PUT the file there (a presigned URL: the API
    key is never sent with it; the file is streamed, never read whole into memory), and start
    processing. A retried or cleared task whose earlier try uploaded the same bytes reuses that
    version instead of adding another. Returns
    ``{"dataset_name", "version", "dataset_id", "size", "labels", "status"}`` (``dataset_name`` and
    ``version`` also as XComs of their own), which
    :class:`~airflow_provider_pioneer.operators.training.PioneerTrainingJobOperator` takes as
    ``datasets``.

    :param input_path: the JSONL file, any ``ObjectStoragePath`` URL (``file://``, ``s3://``...). Templated.
    :param dataset_name: the dataset's name; uploading to an existing name adds a version. Templated.
    :param dataset_type: ``ner`` (default), ``classification``, ``decoder`` or ``custom``.
    :param poll_interval: seconds between status reads while Pioneer processes the file.
    :param wait_timeout: how long processing may take (seconds or timedelta).
    :param pioneer_conn_id: the Pioneer connection.
    """

    template_fields: Sequence[str] = ("input_path", "dataset_name")
    ui_color = "#fef7e0"

    def __init__(
        self,
        *,
        input_path: str,
        dataset_name: str,
        dataset_type: str = "ner",
        poll_interval: float = 5.0,
        wait_timeout: timedelta | float = 1800.0,
        pioneer_conn_id: str = PioneerHook.default_conn_name,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.input_path = input_path
        self.dataset_name = dataset_name
        self.dataset_type = dataset_type
        self.poll_interval = poll_interval
        self.wait_timeout = wait_timeout
        self.pioneer_conn_id = pioneer_conn_id

    def _check(self) -> tuple[str, int, str, list[str]]:
        """Check every row, streaming the file once: its sha256, its size, its name, its labels."""
        from airflow.sdk import ObjectStoragePath

        from airflow_provider_pioneer.lifecycle.datasets import check_rows

        path = ObjectStoragePath(self.input_path)
        if not path.exists():
            raise AirflowFailException(f"Dataset file {self.input_path} does not exist.")
        digest, size = hashlib.sha256(), 0

        def lines(raw: Iterable[bytes]) -> Iterator[str]:
            nonlocal size
            for line in raw:
                digest.update(line)
                size += len(line)
                yield line.decode("utf-8")

        with path.open("rb") as f:
            try:
                check = check_rows(lines(f), self.dataset_type)
            except UnicodeDecodeError:
                raise AirflowFailException(
                    f"Dataset file {self.input_path} is not UTF-8 text; save it as UTF-8 JSONL."
                ) from None
        if not check.ok:
            raise AirflowFailException(check.message(str(self.input_path)))
        self.log.info(
            "%s: %d valid %s rows%s.", self.input_path, check.rows, self.dataset_type,
            f", labels {', '.join(check.labels)}" if check.labels else "",
        )  # fmt: skip
        return digest.hexdigest(), size, path.name or "data.jsonl", check.labels

    def _open(self) -> IO[bytes]:
        from airflow.sdk import ObjectStoragePath

        return ObjectStoragePath(self.input_path).open("rb")

    def _earlier_upload(self, api: Any, record: TaskRecord, digest: str) -> dict[str, Any] | None:
        """The version an earlier try of this task uploaded from the same bytes, if Pioneer has it.

        The API has no content digest, so the task's record keeps the one of what it sent; a
        version whose file never arrived (``initialized``) or that failed is not reused.
        """
        saved = record.get("upload")
        if not (isinstance(saved, dict) and saved.get("digest") == digest and saved.get("version")):
            return None
        try:
            doc = api.get_dataset(self.dataset_name, str(saved["version"]))
        except PioneerError as exc:
            if exc.status == 404:
                return None
            raise
        status = str(doc.get("status") or "").lower()
        if doc.get("id") not in (None, saved.get("dataset_id")) or status in ("", "initialized", _FAILED):
            return None
        self.log.info(
            "Dataset %r version %s holds this file already (uploaded by an earlier try, now %s); "
            "not uploading it again.", self.dataset_name, saved["version"], status,
        )  # fmt: skip
        return {"dataset_id": saved.get("dataset_id"), "version_number": saved["version"]}

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_pioneer.operators._task_record import TaskRecord

        digest, size, filename, labels = self._check()
        api = PioneerHook(self.pioneer_conn_id).lifecycle
        record = TaskRecord(context, "pioneer_dataset")
        try:
            upload = self._earlier_upload(api, record, digest)
            if upload is None:
                upload = api.request_upload(self.dataset_name, self.dataset_type, filename)
                # The presigned URL is a credential for its bucket until it expires: keep it out of logs.
                mask_secret(upload["upload_url"])
                # Recorded before the PUT: a retry after a lost answer finds this version, not a new one.
                record.set("upload", {"dataset_id": upload["dataset_id"], "digest": digest,
                                      "version": upload["version_number"]})  # fmt: skip
                api.put_presigned(upload["upload_url"], self._open, size=size)
                api.process_upload(upload["dataset_id"])
                self.log.info(
                    "Uploaded %d bytes as dataset %r version %s; Pioneer is processing it.",
                    size, self.dataset_name, upload["version_number"],
                )  # fmt: skip
            version = str(upload["version_number"] or "latest")
            ready = self._wait(api, version)
        except PioneerError as exc:
            raise fail_for(exc, f"Uploading dataset {self.dataset_name!r}") from None
        record.forget()
        # Also as XComs of their own: ``upload.output["dataset_name"]`` works downstream.
        context["ti"].xcom_push(key="dataset_name", value=self.dataset_name)
        context["ti"].xcom_push(key="version", value=str(ready.get("version_number") or version))
        return {
            "dataset_name": self.dataset_name,
            "version": str(ready.get("version_number") or version),
            "dataset_id": upload["dataset_id"],
            "size": ready.get("size", ready.get("sample_size")),
            "labels": labels,
            "status": ready.get("status"),
        }

    def _wait(self, api: Any, version: str) -> dict[str, Any]:
        deadline = time.monotonic() + (as_seconds(self.wait_timeout) or 0.0)
        last = None
        while True:
            record = api.get_dataset(self.dataset_name, version)
            status = str(record.get("status") or "").lower()
            if status != last:
                self.log.info("Dataset %r version %s: %s", self.dataset_name, version, status)
                last = status
            if status == _READY:
                return dict(record)
            if status == _FAILED:
                why = record.get("processing_error") or record.get("error_message") or "no reason given"
                raise AirflowFailException(f"Pioneer could not process dataset {self.dataset_name!r}: {why}")
            if time.monotonic() >= deadline:
                raise AirflowException(
                    f"Dataset {self.dataset_name!r} version {version} is still {status!r} after "
                    f"{as_seconds(self.wait_timeout):g} s."
                )
            time.sleep(self.poll_interval)
