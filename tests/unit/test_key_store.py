"""The key store interface's own logic: choosing a store, the view's facts, the Variable store's
reads and writes (Airflow's Variable API stood in for: this is the store's logic, not Airflow's)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_pioneer.rotation import store as store_module
from airflow_provider_pioneer.rotation import variable as variable_module
from airflow_provider_pioneer.rotation.document import build_document, parse_stored
from airflow_provider_pioneer.rotation.store import KeyFacts, KeyStore, kinds, open_store
from airflow_provider_pioneer.rotation.variable import VariableKeyStore

KEY = "pio_sk_unit_store_secret_0123456789abcdef"


def test_the_variable_is_the_default_store_and_follows_the_extras() -> None:
    chosen = open_store(None, {"key_variable": "pioneer_api_key"}, conn_id="c")
    assert isinstance(chosen, VariableKeyStore) and chosen.label == "Variable 'pioneer_api_key'"
    # The operator's own name wins over the extra (the mismatch is then reported, not hidden).
    named = open_store(None, {"key_variable": "other_api_key"}, conn_id="c", name="pioneer_api_key")
    assert isinstance(named, VariableKeyStore) and named.name == "pioneer_api_key"
    assert open_store(None, {}, conn_id="c") is None  # no Variable named: the hook uses the password
    assert open_store(" Variable ", {"key_variable": "k_api_key"}, conn_id="c") is not None
    assert "variable" in kinds()


def test_an_unknown_store_kind_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"Connection 'c': unknown key_store 'vault'; use one of .*variable"):
        open_store(None, {"key_store": "vault"}, conn_id="c")


def test_a_registered_store_is_chosen_by_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[Any, ...]] = []

    def factory(extras: Any, conn_id: str, name: str | None, log: Any) -> KeyStore | None:
        made.append((dict(extras), conn_id, name))
        return None

    monkeypatch.setitem(store_module._FACTORIES, "fake", factory)
    assert open_store(None, {"key_store": "fake", "x": 1}, conn_id="c", name="n") is None
    assert made == [({"key_store": "fake", "x": 1}, "c", "n")]


def test_the_views_facts_never_hold_the_key_nor_show_a_mask() -> None:
    facts = KeyFacts.from_stored(
        parse_stored(build_document(KEY, "airflow-x-1", "2026-01-01T00:00:00Z", ["old"]))
    )
    assert facts == KeyFacts(True, "airflow-x-1", "2026-01-01T00:00:00Z", None, ("old",), None)
    assert KEY not in repr(facts)
    masked = KeyFacts.from_stored(
        parse_stored(
            json.dumps({"api_key": "***", "name": "***", "created_at": "***", "pending_revoke": ["***"]})
        )
    )
    assert (masked.name, masked.created_at, masked.pending_revoke, masked.problem) == (
        None,
        None,
        (),
        "masked",
    )


class _Variables:
    """Stands in for airflow.sdk.Variable: a dict, and writes that may fail."""

    def __init__(self, values: dict[str, str], fail: bool = False) -> None:
        self.values = values
        self.fail = fail

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def set(self, key: str, value: str, description: str | None = None) -> None:
        if self.fail:
            raise RuntimeError("metastore unavailable")
        self.values[key] = value

    def delete(self, key: str) -> None:
        if self.fail:
            raise RuntimeError("metastore unavailable")
        self.values.pop(key, None)


def test_the_variable_store_promotes_records_and_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = _Variables({})
    monkeypatch.setattr(variable_module, "Variable", variables)
    store = VariableKeyStore("pioneer_api_key")
    store.stage("ignored")  # no versions: staging writes nothing
    assert variables.values == {}
    document = build_document(KEY, "airflow-x-1", "t", ["old"])
    store.promote(document, parse_stored(None))
    store.record("airflow-x-1", "t", "old", ["old"])
    assert store.read(fresh=False).api_key == KEY
    assert json.loads(variables.values["pioneer_key_rotation"])["name"] == "airflow-x-1"
    assert KEY not in variables.values["pioneer_key_rotation"]
    # Saved masked from the UI: the message quotes the companion's name (and only in a task).
    variables.values["pioneer_api_key"] = json.dumps({"api_key": "***", "name": "***"})
    stored = store.read()
    assert "The lost key is named 'airflow-x-1' (recorded in Variable 'pioneer_key_rotation')" in str(
        store.explain(stored)
    )
    assert "recorded in" not in str(store.explain(stored, consult_records=False))


def test_the_variable_store_restores_or_says_why_not(monkeypatch: pytest.MonkeyPatch) -> None:
    before = parse_stored(build_document(KEY, "old", None, []))
    variables = _Variables({"pioneer_api_key": "new"})
    monkeypatch.setattr(variable_module, "Variable", variables)
    store = VariableKeyStore("pioneer_api_key")
    assert store.restore(before) == (True, "restored") and variables.values["pioneer_api_key"] == before.raw
    assert (
        store.restore(parse_stored(None)) == (True, "restored") and "pioneer_api_key" not in variables.values
    )
    variables.fail = True
    assert store.restore(before) == (False, "RuntimeError")


def test_the_connection_must_read_the_variable_the_rotation_writes() -> None:
    store = VariableKeyStore("pioneer_api_key")
    assert store.reader_mismatch(VariableKeyStore("pioneer_api_key"), "c") is None
    assert store.reader_mismatch(None, "c") == (
        "Connection 'c' must read the key this task rotates: set its extra key_variable to "
        "'pioneer_api_key' (it is None)."
    )
    assert "(it is 'other_api_key')" in str(store.reader_mismatch(VariableKeyStore("other_api_key"), "c"))


def test_the_view_reads_the_variable_through_its_own_reader() -> None:
    seen: list[str] = []

    def read(name: str) -> str:
        seen.append(name)
        return build_document(KEY, "airflow-x-2", "2026-02-02T00:00:00Z", [])

    facts = VariableKeyStore("pioneer_api_key", read_value=read).describe()
    assert seen == ["pioneer_api_key"] and facts.name == "airflow-x-2"


def _fake(extras: Any, conn_id: str, name: str | None, log: Any) -> KeyStore | None:
    return None


def test_a_kind_is_registered_as_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # The extra is matched case- and blank-insensitively, so the registry must be keyed alike.
    monkeypatch.setattr(store_module, "_FACTORIES", dict(store_module._FACTORIES))
    store_module.register(" Memory ", _fake)
    assert "memory" in kinds()
    assert open_store(None, {"key_store": "MEMORY"}, conn_id="c") is None  # found, not "unknown"


def test_a_kind_registered_twice_is_refused_not_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "_FACTORIES", dict(store_module._FACTORIES))
    store_module.register("memory", _fake)
    store_module.register("memory", _fake)  # the same factory again (a module imported twice): fine
    again = type(_fake)(_fake.__code__, _fake.__globals__, _fake.__name__)  # as a re-executed module has it
    store_module.register("memory", again)
    assert store_module._FACTORIES["memory"] is again
    with pytest.raises(ValueError, match=r"key_store kind 'variable' is registered already"):
        store_module.register("Variable", _fake)  # would silently replace the built-in store
    with pytest.raises(ValueError, match="empty"):
        store_module.register("  ", _fake)
    assert isinstance(open_store(None, {"key_variable": "k_api_key"}, conn_id="c"), VariableKeyStore)


def test_a_blank_key_store_extra_means_the_default() -> None:
    # A form field cleared to spaces is no kind: the default, as an empty one is.
    for blank in ("", "  ", None):
        chosen = open_store(None, {"key_store": blank, "key_variable": "k_api_key"}, conn_id="c")
        assert isinstance(chosen, VariableKeyStore)
    assert isinstance(open_store(" ", {"key_variable": "k_api_key"}, conn_id="c"), VariableKeyStore)


def test_a_store_that_cannot_be_opened_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow_provider_pioneer.exceptions import PioneerConfigurationError
    from airflow_provider_pioneer.hooks.pioneer import PioneerHook

    def broken(extras: Any, conn_id: str, name: str | None, log: Any) -> KeyStore | None:
        raise ModuleNotFoundError("No module named 'boto3'")

    def refusing(extras: Any, conn_id: str, name: str | None, log: Any) -> KeyStore | None:
        raise PioneerConfigurationError("Connection 'c': key_store 'strict' needs the extra key_store_id.")

    monkeypatch.setitem(store_module._FACTORIES, "broken", broken)
    monkeypatch.setitem(store_module._FACTORIES, "strict", refusing)
    hook = PioneerHook("c")
    hook.__dict__["_extras"] = {"key_store": "broken"}  # no connection is read: the extras are given
    with pytest.raises(PioneerConfigurationError) as failure:
        hook.open_key_store()
    assert str(failure.value) == (
        "Connection 'c': key_store 'broken' could not be opened (ModuleNotFoundError: No module named "
        "'boto3'). Fix the connection's extras (or install what the store needs), then rerun."
    )
    assert failure.value.__cause__ is None and failure.value.__suppress_context__
    with pytest.raises(PioneerConfigurationError, match="needs the extra key_store_id"):
        hook.open_key_store("strict")  # the store's own message passes through as it is


class _SecretStore(KeyStore):
    """Another kind of store, as the connection may name one (only its label is read here)."""

    kind = "other"
    noun = "secret"

    @property
    def label(self) -> str:
        return "secret 'pioneer'"

    def read(self, *, fresh: bool = True) -> Any:
        raise NotImplementedError

    def explain(self, stored: Any, *, consult_records: bool = True) -> str | None:
        raise NotImplementedError

    def reader_mismatch(self, reader: KeyStore | None, conn_id: str) -> str | None:
        raise NotImplementedError

    def promote(self, document: str, expected: Any) -> None:
        raise NotImplementedError

    def restore(self, before: Any) -> tuple[bool, str]:
        raise NotImplementedError

    def describe(self) -> KeyFacts:
        raise NotImplementedError


def test_a_connection_reading_another_kind_of_store_is_told_so() -> None:
    # Its key_variable may name the very Variable: "(it is None)" would send the user to the
    # wrong extra. The connection reads the secret: its key_store is what to fix.
    message = VariableKeyStore("pioneer_api_key").reader_mismatch(_SecretStore(), "c")
    assert message == (
        "Connection 'c' must read the key this task rotates, Variable 'pioneer_api_key', but it reads "
        "secret 'pioneer' (its extra key_store): set key_store to 'variable' (or remove it) and "
        "key_variable to 'pioneer_api_key'."
    )


def test_a_factory_must_return_a_key_store(monkeypatch: pytest.MonkeyPatch) -> None:
    # Else the hook's first read fails inside its own fallback, on the object's missing label.
    monkeypatch.setitem(
        store_module._FACTORIES, "loose", lambda extras, conn_id, name, log: "pioneer_api_key"
    )
    with pytest.raises(ValueError, match=r"key_store 'loose' gave a str, not a KeyStore"):
        open_store("loose", {}, conn_id="c")
