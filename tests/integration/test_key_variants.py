"""Key management in every documented variant, over real HTTP to the emulator: a paged
``GET /list-api-keys`` (cursor and offset style) and a ``DELETE /delete-api-key`` that takes only
``key_id`` (API.md: "one page of the docs says {"key_id": ...}")."""

from __future__ import annotations

from typing import Any

import pytest
import requests

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.client import PioneerClient
from airflow_provider_pioneer.testing import PioneerEmulator

STYLES = ["cursor", "offset"]


def client_of(emu: PioneerEmulator, key: str | None = None) -> PioneerClient:
    return PioneerClient(emu.url, key or emu.api_key, max_retries=0)


def sent(emu: PioneerEmulator, what: str) -> int:
    return int(emu.counters()["requests"].get(what, 0))


def listing(emu: PioneerEmulator, **params: Any) -> dict[str, Any]:
    resp = requests.get(
        f"{emu.url}/list-api-keys", headers={"X-API-Key": emu.api_key}, params=params, timeout=10
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def test_the_emulator_pages_the_key_listing_in_both_documented_styles(
    pioneer_emulator: PioneerEmulator,
) -> None:
    emu = pioneer_emulator
    for n in range(4):
        emu.create_key(f"k{n}")
    names = ["bootstrap", "k0", "k1", "k2", "k3"]
    assert [k["name"] for k in listing(emu)["keys"]] == names  # unpaged: API.md's one page

    emu.set_key_listing("cursor", page_size=2)
    first = listing(emu)
    assert [k["name"] for k in first["keys"]] == names[:2] and first["has_more"] is True
    assert first["last_id"] == first["keys"][-1]["id"]
    second = listing(emu, after_id=first["last_id"])
    assert [k["name"] for k in second["keys"]] == names[2:4]
    assert listing(emu, after_id=second["last_id"])["has_more"] is False

    emu.set_key_listing("offset", page_size=2)
    page = listing(emu, offset=4)
    assert [k["name"] for k in page["keys"]] == ["k3"]
    assert (page["total"], page["offset"], page["limit"], page["has_more"]) == (5, 4, 2, False)
    assert listing(emu, offset=0, limit=1)["keys"][0]["name"] == "bootstrap"  # limit caps a page


@pytest.mark.parametrize("style", STYLES)
def test_list_api_keys_reads_every_page(pioneer_emulator: PioneerEmulator, style: str) -> None:
    emu = pioneer_emulator
    for n in range(4):
        emu.create_key(f"k{n}")
    emu.set_key_listing(style, page_size=2)
    client = client_of(emu)
    try:
        names = [k["name"] for k in client.list_api_keys()]
    finally:
        client.close()
    assert names == ["bootstrap", "k0", "k1", "k2", "k3"]
    # Offset pages overlap by one record (a key revoked between two pages must not hide another).
    assert sent(emu, "GET /list-api-keys") == {"cursor": 3, "offset": 4}[style]


def test_revocation_by_key_id_when_the_server_refuses_a_name(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.set_key_revocation("key_id")
    emu.create_key("old-1")
    emu.create_key("old-2")
    refused = requests.delete(
        f"{emu.url}/delete-api-key", headers={"X-API-Key": emu.api_key}, json={"name": "old-1"}, timeout=10
    )
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "key_id"]

    client = client_of(emu)
    try:
        client.delete_api_key("old-1")  # 422 on the name, then by the id the listing carries
        assert emu.alive_key_names() == ["bootstrap", "old-2"]
        assert sent(emu, "DELETE /delete-api-key") == 3  # the test's refused call, the name, the id
        client.delete_api_key("old-2")  # the client now asks by id at once
        assert sent(emu, "DELETE /delete-api-key") == 4
        assert emu.alive_key_names() == ["bootstrap"]
        with pytest.raises(ex.PioneerNotFoundError):
            client.delete_api_key("old-2")  # gone: a 404 to callers, as by name
        created = client.create_api_key("new-1")
        client.delete_api_key("new-1", key_id=created["id"])  # a known id needs no listing
    finally:
        client.close()
    assert emu.alive_key_names() == ["bootstrap"]


def test_a_name_only_server_is_asked_by_name_alone(pioneer_emulator: PioneerEmulator) -> None:
    emu = pioneer_emulator
    emu.set_key_revocation("name")
    emu.create_key("old-1")
    client = client_of(emu)
    try:
        client.delete_api_key("old-1", key_id="key_unused")
    finally:
        client.close()
    assert emu.alive_key_names() == ["bootstrap"]
    assert sent(emu, "DELETE /delete-api-key") == 1
