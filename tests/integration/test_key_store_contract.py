"""The key store contract, over real HTTP: a store registered under a new kind is chosen by the
connection's extra ``key_store``, and the rotation and the hook use it, and only it, in the order
the interface promises (stage the new document before the key is verified, promote it once over
the value read right before, drop the staged document when the key is discarded)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
from airflow_provider_pioneer.hooks.pioneer import PioneerHook
from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator
from airflow_provider_pioneer.rotation import store as store_module
from airflow_provider_pioneer.rotation.document import (
    StoredKey,
    build_document,
    parse_stored,
    problem_message,
)
from airflow_provider_pioneer.rotation.store import KeyFacts, KeyStore
from airflow_provider_pioneer.testing import PioneerEmulator


class MemoryStore(KeyStore):
    """A store with versions, in memory: every call is recorded, promote is a compare-and-set."""

    kind = "memory"
    noun = "secret"
    value: str | None = None
    version = 0
    calls: list[tuple[str, Any]] = []  # shared by every instance, as a real store's state is

    @property
    def label(self) -> str:
        return "secret 'memory'"

    def read(self, *, fresh: bool = True) -> StoredKey:
        MemoryStore.calls.append(("read", fresh))
        stored = parse_stored(MemoryStore.value)
        return StoredKey(**{**stored.__dict__, "version": str(MemoryStore.version)})

    def explain(self, stored: StoredKey, *, consult_records: bool = True) -> str | None:
        return problem_message("memory", stored)

    def reader_mismatch(self, reader: KeyStore | None, conn_id: str) -> str | None:
        return None if isinstance(reader, MemoryStore) else f"Connection {conn_id!r} reads another store."

    def stage(self, document: str) -> None:
        MemoryStore.calls.append(("stage", json.loads(document)["name"]))

    def discard_staged(self) -> None:
        MemoryStore.calls.append(("discard_staged", None))

    def promote(self, document: str, expected: StoredKey) -> None:
        MemoryStore.calls.append(("promote", expected.version))
        if expected.version != str(MemoryStore.version):
            raise RuntimeError("another writer came first")
        MemoryStore.value, MemoryStore.version = document, MemoryStore.version + 1

    def restore(self, before: StoredKey) -> tuple[bool, str]:
        return True, "restored"

    def record(
        self,
        name: str,
        created_at: str | None,
        previous_name: str | None,
        pending_revoke: list[str],
        **extra: Any,
    ) -> None:
        MemoryStore.calls.append(("record", name))

    def describe(self) -> KeyFacts:
        return KeyFacts.from_stored(parse_stored(MemoryStore.value))


@pytest.fixture
def memory(pioneer_emulator: PioneerEmulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[PioneerEmulator]:
    monkeypatch.setitem(
        store_module._FACTORIES, "memory", lambda extras, conn_id, name, log: MemoryStore(log=log)
    )
    MemoryStore.value = build_document(pioneer_emulator.api_key, pioneer_emulator.api_key_name, None, [])
    MemoryStore.version, MemoryStore.calls = 1, []
    conn = {
        "conn_type": "pioneer",
        "host": pioneer_emulator.url,
        "password": "pio_sk_stale",
        "extra": {"key_store": "memory", "max_retries": 0},
    }
    monkeypatch.setenv("AIRFLOW_CONN_PIONEER_DEFAULT", json.dumps(conn))
    yield pioneer_emulator


def test_a_registered_store_is_rotated_and_read_through_the_interface(memory: PioneerEmulator) -> None:
    result = PioneerKeyRotationOperator(task_id="rotate", orphan_grace_period=0).execute({})

    stored = parse_stored(MemoryStore.value)
    assert result == {"name": stored.name, "created_at": stored.created_at, "revoked": [memory.api_key_name]}
    assert memory.alive_key_names() == [stored.name]
    writes = [c for c in MemoryStore.calls if c[0] != "read"]
    # Staged before verification, promoted once over the version read right before, recorded twice.
    assert writes == [
        ("stage", stored.name),
        ("promote", "1"),
        ("record", stored.name),
        ("record", stored.name),
    ]
    assert all(fresh for op, fresh in MemoryStore.calls if op == "read")  # a rotation never reads a cache
    # Every DAG's hook reads the key from the store, not the connection's (stale) password.
    assert PioneerHook().get_api_key() == stored.api_key
    assert MemoryStore.calls[-1] == ("read", False)  # an ordinary task's first read may use a cache


def test_a_discarded_key_takes_its_staged_document_with_it(memory: PioneerEmulator) -> None:
    before = MemoryStore.value
    memory.inject(status=402, path="/list-api-keys", after=1, times=1)  # the new key's check fails

    with pytest.raises(AirflowFailException, match="failed its check"):
        PioneerKeyRotationOperator(task_id="rotate").execute({})

    ops = [op for op, _ in MemoryStore.calls if op != "read"]
    assert ops == ["stage", "discard_staged"] and MemoryStore.value == before
    assert memory.alive_key_names() == [memory.api_key_name]


def test_a_failed_create_stages_nothing_and_drops_nothing(memory: PioneerEmulator) -> None:
    # The create failed (the server may have made the key anyway, so it is deleted by name): the run
    # staged nothing, so it must not ask the store to drop a staged document. A store that drops
    # "whatever is pending" would otherwise drop another rotation's, mid-flight.
    before = MemoryStore.value
    memory.inject(status=500, path="/create-api-key", times=1)

    with pytest.raises(AirflowException, match=r"Creating Pioneer key .* failed"):
        PioneerKeyRotationOperator(task_id="rotate").execute({})

    assert [op for op, _ in MemoryStore.calls if op != "read"] == [] and MemoryStore.value == before
    assert memory.alive_key_names() == [memory.api_key_name]


def test_a_failed_stage_deletes_the_new_key_and_changes_nothing(
    memory: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A store with versions stages over the network (a throttled or refused put): the key it could
    # not stage is never stored, so it must not stay alive (it would count against the hourly
    # create budget, and live until a later rotation sweeps it as an orphan).
    before = MemoryStore.value

    def refused(self: MemoryStore, document: str) -> None:
        MemoryStore.calls.append(("stage", json.loads(document)["name"]))
        raise RuntimeError("ThrottlingException")

    monkeypatch.setattr(MemoryStore, "stage", refused)
    with pytest.raises(
        AirflowException, match=r"Staging the new Pioneer key .* failed \(RuntimeError\)"
    ) as failure:
        PioneerKeyRotationOperator(task_id="rotate").execute({})

    assert not isinstance(failure.value, AirflowFailException)  # a store hiccup: the retry may pass
    assert "was deleted" in str(failure.value) and "unchanged" in str(failure.value)
    ops = [op for op, _ in MemoryStore.calls if op != "read"]
    assert ops == ["stage", "discard_staged"] and MemoryStore.value == before
    assert memory.alive_key_names() == [memory.api_key_name]


def test_a_compare_and_set_that_loses_to_a_concurrent_rotation_keeps_the_winner(
    memory: PioneerEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_pioneer.rotation import steps

    # Another rotation stores its key between this run's last read and its promotion.
    winner = (
        PioneerHook()
        .client_for_key(memory.api_key)
        .create_api_key("airflow-pioneer_api_key-20990101T000000000000Z")
    )
    prepare = steps.prepare_store

    def raced(run: Any, pre: Any, new: Any) -> Any:
        prepared = prepare(run, pre, new)
        MemoryStore.value = build_document(winner["key"], winner["name"], None, [memory.api_key_name])
        MemoryStore.version += 1
        return prepared

    monkeypatch.setattr(steps, "prepare_store", raced)
    result = PioneerKeyRotationOperator(task_id="rotate").execute({})

    assert result["superseded"] is True and result["name"] == winner["name"]
    assert parse_stored(MemoryStore.value).name == winner["name"]  # the winner's value stays
    assert ("promote", "1") in MemoryStore.calls and result["discarded"] not in memory.alive_key_names()


def test_a_401_rereads_the_key_from_the_store_past_its_cache(memory: PioneerEmulator) -> None:
    hook = PioneerHook()
    assert hook.list_api_keys()  # the client now holds the store's first key
    # A rotation elsewhere: the store takes a new key and the first one is revoked.
    fresh = hook.client_for_key(memory.api_key).create_api_key(
        "airflow-pioneer_api_key-20990101T000000000000Z"
    )
    MemoryStore.value = build_document(fresh["key"], fresh["name"], None, [])
    hook.client_for_key(fresh["key"]).delete_api_key(memory.api_key_name)
    MemoryStore.calls = []

    assert fresh["name"] in [r["name"] for r in hook.list_api_keys()]  # the 401 was answered by a re-read
    assert MemoryStore.calls == [("read", True)]
