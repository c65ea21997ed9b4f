"""The emulator's documented variants of key management: a paged listing, revocation by one field.

API.md shows ``GET /list-api-keys`` as one ``{"keys": [...]}`` and ``DELETE /delete-api-key`` taking
``{"name"}``, "one page of the docs says ``{"key_id"}``". A real account may answer either way, so
the emulator can:

* page the listing in the two styles Pioneer documents for its lists: ``"cursor"`` (as
  ``GET /v1/models``: ``?limit=&after_id=``, answering ``has_more``, ``first_id``, ``last_id``) and
  ``"offset"`` (as ``GET /felix/training-jobs`` and ``GET /inferences``: ``?limit=&offset=``,
  answering ``total``, ``limit``, ``offset``, ``has_more``);
* accept only ``name`` or only ``key_id`` in a revocation, refusing the other with FastAPI's 422.

The settings live in one :class:`KeyVariants` per emulator (``EmulatorState.key_variants``); the
builders are pure functions. Their ``/_emulator/`` settings are admin calls (``admin_calls.py``).
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = [
    "PAGING_STYLES",
    "REVOCATION_FIELDS",
    "KeyVariants",
    "check_listing",
    "check_revocation",
    "key_page",
    "refused_field",
]

#: ``None`` (one page, as API.md shows it), ``"cursor"`` or ``"offset"``.
PAGING_STYLES = (None, "cursor", "offset")
#: What ``DELETE /delete-api-key`` accepts: ``"any"`` (name or key_id), ``"name"`` or ``"key_id"``.
REVOCATION_FIELDS = ("any", "name", "key_id")


def check_listing(style: str | None, page_size: int | None) -> None:
    """Refuse a listing setting that cannot be served (``ValueError``, naming what to use)."""
    if style not in PAGING_STYLES:
        raise ValueError(f"key listing style must be one of {PAGING_STYLES}, not {style!r}")
    if style is not None and not (isinstance(page_size, int) and page_size >= 1):
        raise ValueError(f"a paged key listing needs a page_size >= 1, not {page_size!r}")


def check_revocation(accepts: str) -> None:
    if accepts not in REVOCATION_FIELDS:
        raise ValueError(f"key revocation must accept one of {REVOCATION_FIELDS}, not {accepts!r}")


def key_page(
    records: list[dict[str, Any]],
    style: str | None,
    page_size: int | None,
    *,
    limit: int | None = None,
    after_id: str | None = None,
    offset: int | None = None,
) -> dict[str, Any]:
    """The ``GET /list-api-keys`` answer for ``records`` (oldest first) in the configured style.

    A ``limit`` larger than the page size is cut to it, as paged APIs cap their pages.
    """
    if style is None or page_size is None:
        return {"keys": records}
    size = min(limit, page_size) if limit else page_size
    if style == "cursor":
        ids = [r["id"] for r in records]
        start = ids.index(after_id) + 1 if after_id in ids else (len(ids) if after_id else 0)
        page = records[start : start + size]
        return {
            "keys": page,
            "has_more": start + len(page) < len(records),
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
        }
    start = max(0, offset or 0)
    page = records[start : start + size]
    return {
        "keys": page,
        "total": len(records),
        "limit": size,
        "offset": start,
        "has_more": start + len(page) < len(records),
    }


def refused_field(accepts: str, name: str | None, key_id: str | None) -> dict[str, Any] | None:
    """The FastAPI validation error of a revocation body this server does not take, or ``None``."""
    if accepts == "key_id" and not key_id:
        return {
            "loc": ("body", "key_id"),
            "msg": "Field required",
            "type": "missing",
            "input": {"name": name},
        }
    if accepts == "name" and not name:
        return {
            "loc": ("body", "name"),
            "msg": "Field required",
            "type": "missing",
            "input": {"key_id": key_id},
        }
    return None


class KeyVariants:
    """How this emulator's key management answers (thread-safe): API.md's one page and either field
    by default."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._style: str | None = None
        self._page_size: int | None = None
        self._accepts = "any"

    def set_listing(self, style: str | None, page_size: int | None = None) -> None:
        """Page ``GET /list-api-keys`` (``"cursor"`` or ``"offset"``, ``page_size`` keys a page); ``None``: one page."""
        check_listing(style, page_size)
        with self._lock:
            self._style, self._page_size = style, page_size if style else None

    def set_revocation(self, accepts: str) -> None:
        """What ``DELETE /delete-api-key`` takes: ``"any"``, only ``"name"`` or only ``"key_id"``."""
        check_revocation(accepts)
        with self._lock:
            self._accepts = accepts

    def page(self, records: list[dict[str, Any]], **query: Any) -> dict[str, Any]:
        """The listing's answer for ``records`` and the request's ``limit``/``after_id``/``offset``."""
        with self._lock:
            style, size = self._style, self._page_size
        return key_page(records, style, size, **query)

    def revocation(self, name: str | None, key_id: str | None) -> tuple[str | None, str | None]:
        """The ``(name, key_id)`` a revocation goes by; a refused body raises FastAPI's 422.

        An API that takes one field ignores the other (pydantic drops unknown fields).
        """
        with self._lock:
            accepts = self._accepts
        refused = refused_field(accepts, name, key_id)
        if refused is not None:
            from fastapi.exceptions import RequestValidationError

            raise RequestValidationError([refused])
        return (None if accepts == "key_id" else name), (None if accepts == "name" else key_id)
