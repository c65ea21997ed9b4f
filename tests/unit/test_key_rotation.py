"""Unit tests of key rotation's pure rules: managed names, the stored document, what gets revoked."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import pytest

from airflow_provider_pioneer.operators._rotation import (
    build_document,
    check_key_name_prefix,
    check_variable_key,
    default_key_name_prefix,
    is_managed,
    key_names,
    managed_name,
    orphans,
    parse_stored,
    still_pending,
)
from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator

KEY = "pio_sk_unit_test_secret_value_0123456789"


def test_managed_names_sort_by_creation_time_and_are_recognised() -> None:
    t0 = datetime(2025, 3, 9, 23, 59, 59, 999999, tzinfo=UTC)
    names = [managed_name("team-a", t0 + timedelta(microseconds=i * 7919)) for i in range(50)]
    assert names == sorted(names)
    assert len(set(names)) == 50
    assert names[0] == "team-a-20250309T235959999999Z"
    assert all(is_managed(n, "team-a") for n in names)


def test_managed_name_is_in_utc_whatever_the_clock_zone() -> None:
    local = datetime(2025, 1, 1, 8, 0, 0, tzinfo=timezone(timedelta(hours=5)))
    assert managed_name("p", local) == "p-20250101T030000000000Z"


@pytest.mark.parametrize(
    "name",
    [
        "bootstrap",
        "team-a",
        "team-a-",
        "team-a-20250309T235959Z",  # no microseconds: not ours
        "team-a-staging-20250309T235959999999Z",  # a prefix that merely extends ours
        "xteam-a-20250309T235959999999Z",
        "team-a-20250309T235959999999Z-copy",
    ],
)
def test_names_we_did_not_make_are_not_managed(name: str) -> None:
    assert not is_managed(name, "team-a")


def test_prefix_with_regex_characters_is_matched_literally() -> None:
    name = managed_name("a.b", datetime(2025, 1, 1, tzinfo=UTC))
    assert is_managed(name, "a.b")
    assert not is_managed(name.replace("a.b", "axb"), "a.b")


def test_parse_stored_reads_the_rotation_document() -> None:
    raw = build_document(KEY, "team-a-20250101T000000000000Z", "2025-01-01T00:00:00Z", ["old", "old", "x"])
    stored = parse_stored(raw)
    assert stored.present
    assert stored.api_key == KEY
    assert stored.name == "team-a-20250101T000000000000Z"
    assert stored.created_at == "2025-01-01T00:00:00Z"
    assert stored.pending_revoke == ("old", "x")
    assert stored.raw == raw
    assert KEY not in repr(stored)
    assert json.loads(raw)["pending_revoke"] == ["old", "x"]


def test_parse_stored_accepts_a_plain_key_a_dict_and_nothing() -> None:
    plain = parse_stored(f"  {KEY}\n")
    assert (plain.present, plain.api_key, plain.name, plain.pending_revoke) == (True, KEY, None, ())
    as_dict = parse_stored({"api_key": KEY, "name": "n", "pending_revoke": ["a", 3, "", None]})
    assert (as_dict.api_key, as_dict.name, as_dict.pending_revoke) == (KEY, "n", ("a",))
    assert json.loads(as_dict.raw or "")["api_key"] == KEY
    missing = parse_stored(None)
    assert (missing.present, missing.api_key, missing.raw) == (False, None, None)


@pytest.mark.parametrize("value", ["{not json", '{"api_key": 5}', '{"name": "n"}', "   "])
def test_parse_stored_finds_no_key_in_garbage(value: str) -> None:
    stored = parse_stored(value)
    assert stored.present
    assert stored.api_key is None


def test_key_names_reads_the_listing_and_skips_nameless_records() -> None:
    records = [{"name": "a", "key_id": "1"}, {"key_id": "2"}, {"name": ""}, "junk", {"name": "b"}]
    assert key_names(records) == ["a", "b"]
    assert key_names(None) == []


def test_build_document_keeps_extra_bookkeeping() -> None:
    doc = json.loads(build_document(KEY, "n", None, [], previous_name="old"))
    assert doc == {
        "api_key": KEY,
        "name": "n",
        "created_at": None,
        "pending_revoke": [],
        "previous_name": "old",
    }


def test_still_pending_puts_the_old_key_first_and_drops_names_already_gone() -> None:
    live = {"old", "left-1", "new"}
    assert still_pending("old", ("left-1", "left-2", "old"), live, "new") == ["old", "left-1"]
    assert still_pending(None, ("left-1",), live, "new") == ["left-1"]
    # Whatever the bookkeeping says, the key just created is never on the list.
    assert still_pending("new", ("new",), live, "new") == []


def test_orphans_are_managed_live_keys_nobody_keeps() -> None:
    mk = [managed_name("p", datetime(2025, 1, d, tzinfo=UTC)) for d in (1, 2, 3)]
    live = ["bootstrap", mk[0], mk[1], mk[2], "p-staging-20250101T000000000000Z", mk[1]]
    assert orphans(live, "p", keep={mk[2]}) == [mk[0], mk[1]]
    assert orphans(live, "p", keep=set(mk)) == []
    assert orphans(live, "other", keep=set()) == []


@pytest.mark.parametrize("name", ["pioneer_api_key", "PIONEER_API_KEY_PROD", "team_api_key"])
def test_variable_names_with_api_key_pass(name: str) -> None:
    check_variable_key(name)


@pytest.mark.parametrize("name", ["pioneer_key", "pioneer-api-key", "apikey", ""])
def test_variable_names_airflow_would_not_mask_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must contain 'api_key'"):
        check_variable_key(name)


@pytest.mark.parametrize("prefix", ["", "-x", "a b", "a/b", "ü"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="key_name_prefix"):
        check_key_name_prefix(prefix)
    check_key_name_prefix("airflow-pioneer_api_key")


@pytest.mark.parametrize(
    "variable_key, prefix",
    [
        ("pioneer_api_key", "airflow-pioneer_api_key"),
        ("pioneer_api_key_staging", "airflow-pioneer_api_key_staging"),
        ("PROD_API_KEY", "airflow-PROD_API_KEY"),
        ("team/a api_key", "airflow-team-a-api_key"),
    ],
)
def test_default_prefix_is_one_per_variable(variable_key: str, prefix: str) -> None:
    assert default_key_name_prefix(variable_key) == prefix
    check_key_name_prefix(prefix)


def test_two_variables_never_claim_each_others_keys() -> None:
    # The staging prefix extends the prod one: only the full-name match keeps them apart.
    prod = default_key_name_prefix("pioneer_api_key")
    staging = default_key_name_prefix("pioneer_api_key_staging")
    now = datetime(2025, 1, 1, tzinfo=UTC)
    prod_key, staging_key = managed_name(prod, now), managed_name(staging, now)
    live = ["bootstrap", prod_key, staging_key]
    assert orphans(live, prod, keep=set()) == [prod_key]
    assert orphans(live, staging, keep=set()) == [staging_key]


def test_operator_refuses_a_variable_name_airflow_would_not_mask_at_parse_time() -> None:
    with pytest.raises(ValueError, match="so that Airflow masks"):
        PioneerKeyRotationOperator(task_id="rotate", variable_key="pioneer_key")
    with pytest.raises(ValueError, match="key_name_prefix"):
        PioneerKeyRotationOperator(task_id="rotate", key_name_prefix="bad prefix")


def test_operator_defaults_and_templated_names_checked_later() -> None:
    op = PioneerKeyRotationOperator(task_id="rotate", variable_key="{{ params.var }}")
    assert op.variable_key == "{{ params.var }}"
    assert set(op.template_fields) == {"variable_key", "key_name_prefix", "old_key_name"}
    default = PioneerKeyRotationOperator(task_id="rotate2")
    assert (default.variable_key, default.key_name_prefix, default.revoke_old, default.pioneer_conn_id) == (
        "pioneer_api_key",
        None,
        True,
        "pioneer_default",
    )
    assert default._prefix == "airflow-pioneer_api_key"
    staging = PioneerKeyRotationOperator(task_id="rotate3", variable_key="pioneer_api_key_staging")
    assert staging._prefix == "airflow-pioneer_api_key_staging"
    explicit = PioneerKeyRotationOperator(task_id="rotate4", key_name_prefix="team-a")
    assert explicit._prefix == "team-a"
    with pytest.raises(ValueError, match="key_name_prefix"):
        PioneerKeyRotationOperator(task_id="rotate5", key_name_prefix="")


class _ShadowedVariable:
    """Stands in for airflow.sdk.Variable: a shadow always reads back; writes may fail."""

    def __init__(self, writes_fail: bool) -> None:
        self.writes_fail = writes_fail
        self.written: list[tuple[str, str]] = []

    def set(self, key: str, value: str, description: str | None = None) -> None:
        if self.writes_fail:
            raise RuntimeError("metastore unavailable")
        self.written.append((key, value))

    def delete(self, key: str) -> None:
        if self.writes_fail:
            raise RuntimeError("metastore unavailable")
        self.written.append((key, "<deleted>"))


@pytest.mark.parametrize("restore_fails", [False, True], ids=["restored", "restore-failed"])
def test_shadowed_write_deletes_the_new_key_only_once_the_variable_is_restored(
    monkeypatch: pytest.MonkeyPatch, restore_fails: bool
) -> None:
    from airflow_provider_pioneer._compat import AirflowFailException
    from airflow_provider_pioneer.operators import key_rotation

    new_key = "pio_sk_unit_test_new_key_value_9876543210"
    before = parse_stored(build_document(KEY, "old", None, []))
    pre = key_rotation._Preflight(KEY, "Variable", before, "old", "Variable", ("old",))
    new = key_rotation._NewKey(new_key, "airflow-pioneer_api_key-20250101T000000000000Z", "t")
    variable = _ShadowedVariable(writes_fail=restore_fails)
    monkeypatch.setattr(key_rotation, "Variable", variable)
    op = PioneerKeyRotationOperator(task_id="rotate")
    monkeypatch.setattr(op, "_read_variable", lambda: before)  # the shadow wins the read-back
    discarded: list[str] = []
    monkeypatch.setattr(op, "_discard", lambda name, _key: discarded.append(name) or "Key was deleted.")

    with pytest.raises(AirflowFailException, match="shadows it") as failure:
        op._read_back(new, pre)

    message = str(failure.value)
    assert new_key not in message and KEY not in message
    if restore_fails:
        assert discarded == []  # the metastore may hold it: it must stay alive
        assert f"the metastore may hold the new key {new.name!r}: it was kept alive" in message
    else:
        assert discarded == [new.name]
        assert variable.written == [("pioneer_api_key", before.raw)]
        assert "was restored" in message
