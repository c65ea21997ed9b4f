"""Key management over HTTP: every page of ``GET /list-api-keys``, and revocation by name or key id.

Pulled out of :class:`~airflow_provider_pioneer.client.PioneerClient` (which only delegates), so the
documented variants live in one place:

* **Paging.** API.md shows the listing as one ``{"keys": [...]}``; Pioneer's other lists page in
  two documented styles, and a listing read as one page makes a rotation miss its own new key (and
  delete it) or the old key (and refuse to start). Both styles are followed, as
  ``list_base_models`` follows ``/v1/models``: a cursor (``has_more`` + ``last_id``, the next page
  asked for with ``after_id``, as ``GET /v1/models``) and an offset (``has_more`` and/or ``total``
  with ``offset``/``limit``, as ``GET /felix/training-jobs`` and ``GET /inferences``). A listing
  that says more keys follow but cannot be followed is an error, never a short list.
* **Revocation.** API.md's table sends ``{"name": ...}``; one page of the docs says
  ``{"key_id": ...}``. The name goes first; a 422 refusing it is retried once with the key's ``id``
  (given by the caller, else looked up in the listing), and the client then asks by id directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from airflow_provider_pioneer.exceptions import (
    PioneerNotFoundError,
    PioneerResponseError,
    PioneerValidationError,
)
from airflow_provider_pioneer.urls import DELETE_API_KEY, LIST_API_KEYS

__all__ = ["KeyManagement", "next_page_params"]

log = logging.getLogger(__name__)

#: Pages read at most: a bound against a server whose ``has_more`` never turns false.
MAX_PAGES = 1000
#: Fresh reads of a listing that changed between two of its offset pages.
RESTARTS = 2

Call = Callable[..., Any]


def _records(doc: Any) -> list[dict[str, Any]]:
    keys = doc.get("keys") if isinstance(doc, dict) else doc
    if not isinstance(keys, list):
        raise PioneerResponseError(f"Pioneer {LIST_API_KEYS} answered without a list of keys.")
    return keys


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def next_page_params(doc: Any, page: list[Any], seen: int, sent: dict[str, Any]) -> dict[str, Any] | None:
    """The query of the next page of a ``GET /list-api-keys`` answer, or ``None`` after the last page.

    :param doc: this page's answer.
    :param page: its records.
    :param seen: records read so far, this page included.
    :param sent: the query this page was asked with.
    :raises PioneerResponseError: more keys follow, but the answer gives no way to ask for them.
    """
    if not isinstance(doc, dict):
        return None  # a bare list: the whole listing
    total = _int(doc.get("total"))
    has_more = doc.get("has_more") is True or (total is not None and seen < total)
    if not has_more:
        return None
    if not page:
        raise PioneerResponseError(
            f"Pioneer {LIST_API_KEYS} said more keys follow (has_more/total) but sent an empty page; "
            "the listing cannot be read whole. Try again later."
        )
    last_id = doc.get("last_id")
    if isinstance(last_id, str) and last_id:
        return {"after_id": last_id}  # cursor style (GET /v1/models)
    if total is not None or "offset" in doc or "limit" in doc:
        offset = _int(doc.get("offset"))
        start = offset if offset is not None else _int(sent.get("offset")) or 0
        params: dict[str, Any] = {"offset": start + len(page)}  # offset style (training jobs, inferences)
        if _int(doc.get("limit")):
            params["limit"] = doc["limit"]
        return params
    raise PioneerResponseError(
        f"Pioneer {LIST_API_KEYS} said more keys follow (has_more) but gave neither a last_id nor an "
        "offset to ask for them; the listing cannot be read whole."
    )


def _identity(record: Any) -> Any:
    if not isinstance(record, dict):
        return repr(record)
    return record.get("id") or (record.get("name"), record.get("created_at"))


class KeyManagement:
    """The key-management calls of one client.

    :param call: the client's call loop (``call(route, body=None, params=None, ...)``).
    """

    def __init__(self, call: Call) -> None:
        self._call = call
        #: The server refused a revocation by name and took one by id: ask by id from now on.
        self.revoke_by_id = False

    def list_page(
        self, params: dict[str, Any] | None = None
    ) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        """One page of ``GET /list-api-keys``: its records and the query of the next page (``None``: last)."""
        sent = dict(params or {})
        doc = self._call(LIST_API_KEYS, params=sent or None)
        page = _records(doc)
        return page, next_page_params(doc, page, (_int(sent.get("offset")) or 0) + len(page), sent)

    def list_all(self) -> list[dict[str, Any]]:
        """Every page of ``GET /list-api-keys`` (each record once, however the pages overlap).

        An offset-paged listing shifts when a key is created or revoked between two pages (a
        concurrent rotation), which would skip a live key: so each next page is asked with one record
        of overlap, and when it does not start with the record read last, the listing is read again
        from the start (at most :data:`RESTARTS` times).
        """
        for _ in range(RESTARTS + 1):
            records = self._read_through()
            if records is not None:
                return records
        raise PioneerResponseError(
            f"Pioneer {LIST_API_KEYS} changed between its pages {RESTARTS + 1} times in a row (keys created "
            "or revoked meanwhile, or a server that ignores the offset); the listing cannot be read whole. "
            "Try again later."
        )

    def _read_through(self) -> list[dict[str, Any]] | None:
        """One pass over the pages; ``None`` when an offset page did not start where the last one ended."""
        records: list[dict[str, Any]] = []
        seen: set[Any] = set()
        params: dict[str, Any] | None = None
        expect: Any = None  # the record an overlapping offset page must start with
        for _ in range(MAX_PAGES):
            doc = self._call(LIST_API_KEYS, params=params)
            page = _records(doc)
            if expect is not None and (not page or _identity(page[0]) != expect):
                return None
            fresh = [r for r in page if _identity(r) not in seen]
            if params is not None and page and not fresh:
                raise PioneerResponseError(
                    f"Pioneer {LIST_API_KEYS} answered the same page again for {params}: the server "
                    "ignores the paging parameters, so the listing cannot be read whole."
                )
            seen.update(_identity(r) for r in fresh)
            records.extend(fresh)
            sent = params or {}
            position = (_int(sent.get("offset")) or 0) + len(page) if "offset" in sent else len(records)
            params = next_page_params(doc, page, max(position, len(records)), sent)
            if params is None:
                return records
            expect = None
            if "offset" in params and len(page) >= 2:  # one record of overlap (a page of 1 could not advance)
                params["offset"] -= 1
                expect = _identity(page[-1])
        raise PioneerResponseError(
            f"Pioneer {LIST_API_KEYS} still had more keys after {MAX_PAGES} pages; refusing to read on."
        )

    def revoke(self, name: str, key_id: str | None = None) -> dict[str, Any]:
        """``DELETE /delete-api-key``: revoke the key called ``name`` (immediate, permanent).

        :param name: the key's name.
        :param key_id: its ``id``, when known; asked for by id if the server refuses the name.
        :raises PioneerNotFoundError: no such key (404, or no live key of that name to revoke by id).
        """
        if not self.revoke_by_id:
            try:
                return self._delete({"name": name}, name)
            except PioneerValidationError as exc:
                if exc.status != 422:
                    raise
                ids = self._ids_of(name, key_id)
                if ids is None:
                    raise PioneerResponseError(
                        f"Pioneer {DELETE_API_KEY} refused to revoke key {name!r} by name ({exc.message}) "
                        "and its record in GET /list-api-keys carries no 'id' to revoke it by key_id. "
                        "Revoke it in the Pioneer console."
                    ) from exc
                log.info("Pioneer %s refused a name (HTTP 422); revoking by key_id.", DELETE_API_KEY)
                result = self._delete_ids(name, ids)
                self.revoke_by_id = True
                return result
        ids = self._ids_of(name, key_id)
        if ids is None:
            raise PioneerResponseError(
                f"Pioneer {DELETE_API_KEY} takes a key_id, and the record of key {name!r} in "
                "GET /list-api-keys carries no 'id'. Revoke it in the Pioneer console."
            )
        return self._delete_ids(name, ids)

    def _delete(self, body: dict[str, str], name: str) -> dict[str, Any]:
        doc = self._call(DELETE_API_KEY, body)
        return doc if isinstance(doc, dict) else {"deleted": True, "name": name}

    def _delete_ids(self, name: str, ids: list[str]) -> dict[str, Any]:
        if not ids:
            raise PioneerNotFoundError(f"Pioneer {DELETE_API_KEY}: no live key named {name!r}.", status=404)
        result: dict[str, Any] = {}
        gone = 0
        for key_id in ids:
            try:
                result = self._delete({"key_id": key_id}, name)
            except PioneerNotFoundError:
                gone += 1
        if gone == len(ids):
            raise PioneerNotFoundError(f"Pioneer {DELETE_API_KEY}: no live key named {name!r}.", status=404)
        return {**result, "name": name}

    def _ids_of(self, name: str, key_id: str | None) -> list[str] | None:
        """The ids to revoke for ``name``: the one given, else every live key of that name.

        Revoking by name revokes every key sharing it (names are not unique), so revoking by id does
        the same. ``[]``: no live key has that name; ``None``: one has, but its record has no ``id``.
        """
        if key_id:
            return [key_id]
        ids: list[str] = []
        for record in self.list_all():
            if isinstance(record, dict) and record.get("name") == name:
                if not (isinstance(record.get("id"), str) and record["id"]):
                    return None
                ids.append(record["id"])
        return ids
