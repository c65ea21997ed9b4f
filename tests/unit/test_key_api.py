"""Paging rules of GET /list-api-keys (pure logic; the HTTP side is tests/integration/test_key_variants.py):
a listing that says more keys follow is read whole or refused, never returned short."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_pioneer.exceptions import PioneerResponseError
from airflow_provider_pioneer.key_api import KeyManagement, next_page_params


def rec(n: int) -> dict[str, Any]:
    return {"id": f"key_{n}", "name": f"k{n}"}


def test_each_documented_style_gives_the_next_query() -> None:
    page = [rec(1), rec(2)]
    assert next_page_params({"keys": page, "has_more": True, "last_id": "key_2"}, page, 2, {}) == {
        "after_id": "key_2"
    }
    offset = {"keys": page, "total": 5, "offset": 2, "limit": 2}  # no has_more: total decides
    assert next_page_params(offset, page, 4, {"offset": 2}) == {"offset": 4, "limit": 2}
    assert next_page_params({"keys": page, "total": 4, "offset": 2}, page, 4, {}) is None
    assert next_page_params({"keys": page}, page, 2, {}) is None  # API.md's one page
    assert next_page_params(page, page, 2, {}) is None  # a bare list


@pytest.mark.parametrize(
    "doc",
    [
        {"keys": [rec(1)], "has_more": True},  # more, but no cursor and no offset to ask with
        {"keys": [], "has_more": True, "last_id": "key_1"},  # more, yet an empty page
    ],
)
def test_a_listing_that_cannot_be_followed_is_an_error(doc: dict[str, Any]) -> None:
    with pytest.raises(PioneerResponseError, match="cannot be read whole"):
        next_page_params(doc, doc["keys"], len(doc["keys"]), {})


def test_a_server_that_ignores_the_paging_query_is_refused_not_looped() -> None:
    calls: list[Any] = []

    def call(route: Any, body: Any = None, params: Any = None, **_: Any) -> Any:
        calls.append(params)
        return {"keys": [rec(1), rec(2)], "has_more": True, "last_id": "key_2"}

    with pytest.raises(PioneerResponseError, match="same page again"):
        KeyManagement(call).list_all()
    assert calls == [None, {"after_id": "key_2"}]


def offset_server(listings: list[list[dict[str, Any]]], size: int = 2) -> Any:
    """An offset-paged listing that answers each request from the next state in ``listings`` (the last
    one repeats): keys revoked between two pages, as a concurrent rotation does."""
    calls: list[Any] = []

    def call(route: Any, body: Any = None, params: Any = None, **_: Any) -> Any:
        records = listings[min(len(calls), len(listings) - 1)]
        calls.append(params)
        start = (params or {}).get("offset", 0)
        page = records[start : start + size]
        return {"keys": page, "total": len(records), "offset": start, "limit": size}

    call.calls = calls  # type: ignore[attr-defined]
    return call


def test_a_key_revoked_between_offset_pages_hides_no_live_key() -> None:
    before = [rec(n) for n in range(5)]
    after = [r for r in before if r["id"] != "key_0"]  # revoked after the first page was read
    call = offset_server([before, after])
    names = [r["name"] for r in KeyManagement(call).list_all()]
    # Without the overlap the second page (offset 2 of the shifted list) would start at k3: k2 lost.
    assert names == ["k1", "k2", "k3", "k4"]
    assert call.calls[:2] == [None, {"offset": 1, "limit": 2}]  # one record of overlap


def test_a_listing_that_keeps_shifting_is_refused() -> None:
    states = [[rec(n) for n in range(i, i + 5)] for i in range(10)]  # a key revoked before every page
    with pytest.raises(PioneerResponseError, match="changed between its pages"):
        KeyManagement(offset_server(states)).list_all()
