"""PioneerHook: connection and Variable resolution, the Test button, masking, over real HTTP."""

from __future__ import annotations

import json

import pytest
from airflow.exceptions import AirflowNotFoundException
from airflow.sdk import Connection

from airflow_provider_pioneer import exceptions as ex
from airflow_provider_pioneer.hooks.pioneer import PioneerHook, parse_stored_key
from airflow_provider_pioneer.testing import PioneerEmulator
from airflow_provider_pioneer.urls import DEFAULT_BASE_URL

MODEL = "fastino/gliner2-base-v1"


def set_conn(monkeypatch: pytest.MonkeyPatch, value: str | dict, conn_id: str = "pioneer_default") -> None:
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{conn_id.upper()}", value if isinstance(value, str) else json.dumps(value)
    )


def json_conn(emu: PioneerEmulator, password: str | None = None, **extra: object) -> dict:
    return {"conn_type": "pioneer", "host": emu.url, "password": password or emu.api_key, "extra": extra}


def test_json_connection_from_env(pioneer_emulator: PioneerEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, json_conn(pioneer_emulator, timeout=5, max_retries=2))
    hook = PioneerHook()
    doc = hook.infer(["Apple announced the MacBook Pro."], schema={"entities": ["product"]}, model_id=MODEL)
    assert doc["result"][0]["entities"]["product"][0]["text"] == "MacBook Pro"
    assert (hook.client.timeout, hook.client.max_retries) == (5.0, 2)
    assert hook.get_conn() is hook.client  # built once


def test_uri_connection_to_loopback_defaults_to_http(pioneer_emulator: PioneerEmulator, monkeypatch) -> None:
    host_port = pioneer_emulator.url.removeprefix("http://")
    set_conn(monkeypatch, f"pioneer://:{pioneer_emulator.api_key}@{host_port}")
    hook = PioneerHook()
    assert hook.base_url == pioneer_emulator.url
    assert hook.test_connection()[0] is True


def test_empty_host_is_production_and_other_hosts_default_to_https(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, {"conn_type": "pioneer", "password": "pio_sk_x"})
    assert PioneerHook().base_url == DEFAULT_BASE_URL
    set_conn(monkeypatch, "pioneer://:pio_sk_x@api.example.com:8443")
    assert PioneerHook().base_url == "https://api.example.com:8443"
    set_conn(
        monkeypatch, {"conn_type": "pioneer", "host": "http://127.0.0.1/", "port": 8090, "password": "k"}
    )
    assert PioneerHook().base_url == "http://127.0.0.1:8090"
    set_conn(
        monkeypatch,
        {"conn_type": "pioneer", "host": "https://eu.pioneer.ai:9443", "port": 1, "password": "k"},
    )
    assert PioneerHook().base_url == "https://eu.pioneer.ai:9443"  # a port in the URL wins


def test_plain_http_to_a_remote_host_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, {"conn_type": "pioneer", "host": "http://api.example.com", "password": "pio_sk_x"})
    with pytest.raises(ex.PioneerConfigurationError, match="plain http"):
        PioneerHook().client  # noqa: B018


def test_missing_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, {"conn_type": "pioneer", "host": "https://api.pioneer.ai"})
    with pytest.raises(ex.PioneerConfigurationError, match="No Pioneer API key in connection"):
        PioneerHook().client  # noqa: B018


def test_bad_extras_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    set_conn(monkeypatch, {"conn_type": "pioneer", "password": "pio_sk_x", "extra": {"timeout": "soon"}})
    with pytest.raises(ex.PioneerConfigurationError, match="extra 'timeout' must be a number, not 'soon'"):
        PioneerHook().client  # noqa: B018


def test_an_unknown_key_store_extra_is_refused_with_the_extras(monkeypatch: pytest.MonkeyPatch) -> None:
    # Refused where the extras are read, not first when a task reads its key: a hook that never
    # reads one (a client for a given key) would otherwise run on a connection every task fails on.
    extra = {"key_store": "vault", "key_variable": "pioneer_api_key"}
    set_conn(monkeypatch, {"conn_type": "pioneer", "password": "pio_sk_x", "extra": extra})
    message = (
        "Connection 'pioneer_default': unknown key_store 'vault'; use one of aws_secrets_manager, variable "
        "in the connection's extra key_store, or remove it (the key is then read from the Variable "
        "key_variable names)."
    )
    with pytest.raises(ex.PioneerConfigurationError) as failure:
        PioneerHook().client_for_key("pio_sk_x")
    assert str(failure.value) == message
    assert PioneerHook().test_connection() == (False, message)
    # Matched as the registry matches it: case and surrounding blanks do not count.
    set_conn(
        monkeypatch, {"conn_type": "pioneer", "password": "pio_sk_x", "extra": {"key_store": " Variable "}}
    )
    PioneerHook().client_for_key("pio_sk_x").close()


@pytest.mark.parametrize("extra, kind", [("[1, 2]", "an array"), ('"pioneer_api_key"', "a string")])
def test_extras_that_are_not_a_json_object_are_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, extra: str, kind: str
) -> None:
    # Valid JSON that Airflow 3.3 hands over as it is: every read of an extra (the key store first)
    # failed with "AttributeError: 'list' object has no attribute 'get'".
    set_conn(monkeypatch, {"conn_type": "pioneer", "password": "pio_sk_x", "extra": extra})
    try:
        PioneerHook.get_connection("pioneer_default")
    except AirflowNotFoundException:
        # Airflow 3.1's environment backend refuses such a connection itself ("isn't defined"),
        # before a hook reads it. What a task's supervisor or another backend hands over as it is
        # still reaches the hook: hand it the same connection that way.
        connection = Connection(
            conn_id="pioneer_default", conn_type="pioneer", password="pio_sk_x", extra=extra
        )
        monkeypatch.setattr(PioneerHook, "get_connection", classmethod(lambda cls, conn_id: connection))
    message = (
        "Connection 'pioneer_default': its extra must be a JSON object, as "
        f'{{"key_variable": "pioneer_api_key"}}, not {kind}. Fix it in the connection.'
    )
    with pytest.raises(ex.PioneerConfigurationError) as failure:
        PioneerHook().get_api_key()
    assert str(failure.value) == message
    assert PioneerHook().test_connection() == (False, message)


def test_cleared_form_fields_mean_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {"timeout": None, "max_retries": "", "deadline": None, "allow_insecure_http": None}
    set_conn(monkeypatch, {"conn_type": "pioneer", "password": "pio_sk_x", "extra": extra})
    client = PioneerHook().client
    assert (client.timeout, client.max_retries, client.deadline) == (60.0, 5, 600.0)
    set_conn(monkeypatch, {"conn_type": "pioneer", "password": "pio_sk_x", "extra": {"max_retries": "2"}})
    assert PioneerHook().client.max_retries == 2


@pytest.mark.parametrize("stored", ["plain", "rotation-json"])
def test_key_variable_wins_over_password(
    pioneer_emulator: PioneerEmulator, monkeypatch: pytest.MonkeyPatch, stored: str
) -> None:
    key = pioneer_emulator.create_key("rotated-1")
    value = key if stored == "plain" else json.dumps({"api_key": key, "name": "rotated-1", "created_at": "x"})
    monkeypatch.setenv("AIRFLOW_VAR_PIONEER_API_KEY", value)
    set_conn(
        monkeypatch, json_conn(pioneer_emulator, password="pio_sk_stale", key_variable="pioneer_api_key")
    )
    hook = PioneerHook()
    assert hook.get_api_key() == key
    assert hook.test_connection()[0] is True


def test_missing_variable_falls_back_to_password(pioneer_emulator: PioneerEmulator, monkeypatch) -> None:
    set_conn(monkeypatch, json_conn(pioneer_emulator, key_variable="pioneer_api_key_absent"))
    assert PioneerHook().list_api_keys()


def test_401_rereads_the_variable_after_a_rotation(pioneer_emulator: PioneerEmulator, monkeypatch) -> None:
    first = pioneer_emulator.create_key("gen-1")
    monkeypatch.setenv("AIRFLOW_VAR_PIONEER_API_KEY", json.dumps({"api_key": first, "name": "gen-1"}))
    set_conn(
        monkeypatch, json_conn(pioneer_emulator, password="pio_sk_stale", key_variable="pioneer_api_key")
    )
    hook = PioneerHook()
    hook.list_api_keys()
    # Another DAG rotates: new key stored, old one revoked.
    second = pioneer_emulator.create_key("gen-2")
    monkeypatch.setenv("AIRFLOW_VAR_PIONEER_API_KEY", json.dumps({"api_key": second, "name": "gen-2"}))
    hook.delete_api_key("gen-1")
    assert not pioneer_emulator.key_is_alive(first)
    assert hook.infer("Apple.", schema={"entities": ["organization"]}, model_id=MODEL)["result"]
    assert hook.get_api_key() == second


def test_test_connection_reports_failure_without_the_key(
    pioneer_emulator: PioneerEmulator, monkeypatch
) -> None:
    bad = "pio_sk_" + "0" * 32
    set_conn(monkeypatch, json_conn(pioneer_emulator, password=bad))
    ok, message = PioneerHook().test_connection()
    assert ok is False and "401" in message and bad not in message
    set_conn(monkeypatch, json_conn(pioneer_emulator))
    ok, message = PioneerHook().test_connection()
    assert ok is True and pioneer_emulator.api_key not in message
    assert pioneer_emulator.counters()["requests"].get("POST /inference", 0) == 0  # free: never an inference


def test_test_connection_costs_nothing(pioneer_emulator: PioneerEmulator, monkeypatch) -> None:
    pioneer_emulator.set_credits(0)  # even a drained account answers 402, not a charge
    set_conn(monkeypatch, json_conn(pioneer_emulator))
    ok, message = PioneerHook().test_connection()
    assert ok is False and "402" in message and "Top up" in message
    assert pioneer_emulator.counters()["tokens_billed"] == 0


def test_every_resolved_key_is_masked(pioneer_emulator: PioneerEmulator, monkeypatch) -> None:
    from tests.airflow_compat import redact

    rotated = pioneer_emulator.create_key("masked-1")
    monkeypatch.setenv("AIRFLOW_VAR_PIONEER_SECRET_HOLDER", rotated)  # a name Airflow would not mask itself
    set_conn(monkeypatch, json_conn(pioneer_emulator, key_variable="pioneer_secret_holder"))
    hook = PioneerHook()
    hook.list_api_keys()
    created = hook.create_api_key("masked-2")["key"]
    for key in (rotated, created):
        assert key not in redact(f"leak {key} here")


def test_parse_stored_key_forms() -> None:
    assert parse_stored_key("pio_sk_a") == "pio_sk_a"
    assert parse_stored_key(' {"api_key": "pio_sk_b", "name": "n"} ') == "pio_sk_b"
    assert parse_stored_key({"api_key": "pio_sk_c"}) == "pio_sk_c"
    assert parse_stored_key(None) is None
    for broken in ('{"name": "no key"}', "{not json", "", '{"api_key": "***"}', "***"):
        with pytest.raises(ex.PioneerConfigurationError, match="Variable 'v'"):
            parse_stored_key(broken, "v")


@pytest.mark.parametrize(
    "value, says",
    [
        ('{"api_key": "pio_sk_cut", "name": "airflow-x', "holds malformed JSON"),
        (
            '{"api_key": "***", "name": "airflow-pioneer_api_key-20260101T000000000000Z"}',
            "masked placeholder",
        ),
        ("***", "masked placeholder"),
    ],
    ids=["malformed-json", "masked-document", "masked-plain"],
)
def test_a_variable_without_a_usable_key_fails_clearly_instead_of_using_the_password(
    pioneer_emulator: PioneerEmulator, monkeypatch, value: str, says: str
) -> None:
    # The password works here: the old code silently used it (it may be long revoked in real life).
    monkeypatch.setenv("AIRFLOW_VAR_PIONEER_API_KEY", value)
    set_conn(monkeypatch, json_conn(pioneer_emulator, key_variable="pioneer_api_key"))
    before = pioneer_emulator.counters()["requests"]
    with pytest.raises(ex.PioneerConfigurationError) as failure:
        PioneerHook().list_api_keys()
    message = str(failure.value)
    assert "Variable 'pioneer_api_key'" in message and says in message
    assert "delete" in message  # how to recover
    assert pioneer_emulator.counters()["requests"] == before  # nothing was sent


def test_hook_attributes_follow_airflow_conventions() -> None:
    assert PioneerHook.conn_name_attr == "pioneer_conn_id"
    assert PioneerHook.default_conn_name == "pioneer_default"
    assert PioneerHook.conn_type == "pioneer" and PioneerHook.hook_name == "Pioneer"
    behaviour = PioneerHook.get_ui_field_behaviour()
    assert behaviour["relabeling"]["password"] == "API key"


def test_warning_when_the_variable_cannot_be_read(monkeypatch, capfd, pioneer_emulator) -> None:
    set_conn(monkeypatch, json_conn(pioneer_emulator, key_variable="pioneer_api_key"))
    hook = PioneerHook()

    def boom(*a: object, **k: object) -> None:
        raise RuntimeError("backend down")

    import airflow.sdk

    monkeypatch.setattr(airflow.sdk.Variable, "get", boom)
    assert hook.get_api_key() == pioneer_emulator.api_key
    out, err = capfd.readouterr()
    assert "Could not read Variable 'pioneer_api_key'" in out + err


def test_401_reread_goes_past_airflows_secrets_cache(pioneer_emulator: PioneerEmulator, monkeypatch) -> None:
    from airflow.sdk.execution_time.cache import SecretCache

    monkeypatch.setenv("AIRFLOW__SECRETS__USE_CACHE", "True")
    SecretCache.reset()
    SecretCache.init()
    try:
        first = pioneer_emulator.create_key("cached-1")
        monkeypatch.setenv("AIRFLOW_VAR_PIONEER_API_KEY", json.dumps({"api_key": first, "name": "cached-1"}))
        set_conn(
            monkeypatch,
            json_conn(pioneer_emulator, password="pio_sk_stale", key_variable="pioneer_api_key"),
        )
        hook = PioneerHook()
        hook.list_api_keys()  # the Variable is now in the cache
        second = pioneer_emulator.create_key("cached-2")
        monkeypatch.setenv("AIRFLOW_VAR_PIONEER_API_KEY", json.dumps({"api_key": second, "name": "cached-2"}))
        assert hook.read_variable_key() == first  # a plain read is served from the cache
        hook.delete_api_key("cached-1")
        assert hook.list_api_keys()  # 401, then the re-read skips the cache and finds the rotated key
        assert hook.client.stats.snapshot()["statuses"][401] == 1
    finally:
        SecretCache.reset()
