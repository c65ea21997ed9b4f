"""Unit tests of key rotation's pure rules: managed names, the stored document, what gets revoked."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone

import pytest

from airflow_provider_pioneer.operators.key_rotation import PioneerKeyRotationOperator
from airflow_provider_pioneer.rotation.document import build_document, parse_stored, problem_message
from airflow_provider_pioneer.rotation.naming import (
    check_key_name_prefix,
    check_variable_key,
    created_within,
    default_key_name_prefix,
    is_managed,
    key_birth,
    key_names,
    managed_name,
    orphans,
    still_pending,
)
from airflow_provider_pioneer.rotation.run import NewKey, Policy, Preflight, Run
from airflow_provider_pioneer.rotation.variable import VariableKeyStore

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


@pytest.mark.parametrize(
    "value, problem, says",
    [
        ('{"api_key": "pio_sk_x", "name": ', "malformed", "holds malformed JSON"),
        ("{not json", "malformed", "holds malformed JSON"),
        (
            '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "malformed",
            "holds malformed JSON",
        ),  # RecursionError
        ('{"api_key": 5}', "not_a_document", "neither a plain key nor"),
        ('{"name": "n"}', "not_a_document", "neither a plain key nor"),
        ("[1, 2]", "not_a_document", "neither a plain key nor"),
        ("   ", "not_a_document", "neither a plain key nor"),
        ("***", "masked", "masked placeholder"),
        ('{"api_key": "***", "name": "airflow-p-20250101T000000000000Z"}', "masked", "masked placeholder"),
        ('{"api_key": "********", "name": null}', "masked", "masked placeholder"),
    ],
)
def test_values_without_a_usable_key_are_problems_with_a_way_out(value: str, problem: str, says: str) -> None:
    stored = parse_stored(value)
    assert (stored.present, stored.api_key, stored.problem) == (True, None, problem)
    message = problem_message("pioneer_api_key", stored)
    assert message is not None
    assert "Variable 'pioneer_api_key'" in message and says in message
    # Every message says what to do.
    assert "delete" in message and "working key" in message


def test_masked_document_keeps_its_bookkeeping_and_names_the_lost_key() -> None:
    stored = parse_stored(
        '{"api_key": "***", "name": "airflow-p-20250101T000000000000Z", "pending_revoke": ["old"]}'
    )
    assert stored.name == "airflow-p-20250101T000000000000Z" and stored.pending_revoke == ("old",)
    message = problem_message("pioneer_api_key", stored) or ""
    assert "'airflow-p-20250101T000000000000Z'" in message and "orphan_grace_period" in message


def test_usable_values_are_no_problem() -> None:
    for value in (KEY, build_document(KEY, "n", None, []), None, "pio_sk_*not_only_stars*"):
        assert problem_message("v_api_key", parse_stored(value)) is None


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


def _records(*names: str) -> list[dict[str, str]]:
    return [{"name": n} for n in names]


LATER = datetime(2025, 2, 1, tzinfo=UTC)
NO_GRACE = timedelta(0)


def test_orphans_are_managed_live_keys_nobody_keeps() -> None:
    mk = [managed_name("p", datetime(2025, 1, d, tzinfo=UTC)) for d in (1, 2, 3)]
    live = _records("bootstrap", mk[0], mk[1], mk[2], "p-staging-20250101T000000000000Z", mk[1])
    assert orphans(live, "p", keep={mk[2]}, now=LATER, grace=NO_GRACE) == [mk[0], mk[1]]
    assert orphans(live, "p", keep=set(mk), now=LATER, grace=NO_GRACE) == []
    assert orphans(live, "other", keep=set(), now=LATER, grace=NO_GRACE) == []


def test_young_keys_and_keys_newer_than_the_stored_one_are_no_orphans() -> None:
    # A concurrent rotation's key, created and not yet stored, is young: never revoked.
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    old = managed_name("p", now - timedelta(minutes=20))
    young = managed_name("p", now - timedelta(minutes=5))
    live = _records(old, young)
    assert orphans(live, "p", set(), now=now, grace=timedelta(minutes=15)) == [old]
    assert orphans(live, "p", set(), now=now, grace=NO_GRACE) == [old, young]
    # Only keys created before the stored one.
    assert orphans(live, "p", set(), now=now, grace=NO_GRACE, before=key_birth(young, "p")) == [old]


def test_key_age_takes_the_later_of_name_and_created_at() -> None:
    # A server clock ahead of the worker's makes the key look younger (kept longer), never older.
    name = managed_name("p", datetime(2025, 1, 1, 12, 0, tzinfo=UTC))
    assert key_birth(name, "p") == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert key_birth(name, "p", "2025-01-01T12:03:00Z") == datetime(2025, 1, 1, 12, 3, tzinfo=UTC)
    assert key_birth(name, "p", "2025-01-01T11:00:00+00:00") == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert key_birth(name, "p", "garbage") == datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    assert key_birth("bootstrap", "p") is None


def test_created_within_counts_live_and_remembered_managed_keys_of_the_last_hour() -> None:
    now = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
    recent = [managed_name("p", now - timedelta(minutes=m)) for m in (1, 10, 59)]
    stale = managed_name("p", now - timedelta(minutes=61))
    live = _records("bootstrap", recent[0], stale, "q-20250101T115900000000Z")
    # Revoked keys are not listed; the Variable's document remembers them.
    remembered = [recent[1], recent[2], recent[0], stale, "not-managed"]
    assert created_within(live, remembered, "p", now=now, window=timedelta(hours=1)) == sorted(recent)


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
    live = _records("bootstrap", prod_key, staging_key)
    assert orphans(live, prod, keep=set(), now=LATER, grace=NO_GRACE) == [prod_key]
    assert orphans(live, staging, keep=set(), now=LATER, grace=NO_GRACE) == [staging_key]


def test_operator_refuses_a_variable_name_airflow_would_not_mask_at_parse_time() -> None:
    with pytest.raises(ValueError, match="so that Airflow masks"):
        PioneerKeyRotationOperator(task_id="rotate", variable_key="pioneer_key")
    with pytest.raises(ValueError, match="key_name_prefix"):
        PioneerKeyRotationOperator(task_id="rotate", key_name_prefix="bad prefix")
    with pytest.raises(ValueError, match="orphan_grace_period"):
        PioneerKeyRotationOperator(task_id="rotate", orphan_grace_period=-1)
    with pytest.raises(ValueError, match="max_keys_created_per_hour"):
        PioneerKeyRotationOperator(task_id="rotate", max_keys_created_per_hour=0)


def test_operator_refuses_an_unknown_key_store_at_parse_time() -> None:
    # key_store is not templated: its value is final when the DAG file is parsed.
    with pytest.raises(
        ValueError,
        match=r"^key_store 'vault' is no known key store; use one of aws_secrets_manager, variable",
    ):
        PioneerKeyRotationOperator(task_id="rotate", key_store="vault")
    with pytest.raises(ValueError, match="key_store is not templated"):
        PioneerKeyRotationOperator(task_id="rotate", key_store="{{ var.value.store }}")
    assert "key_store" not in PioneerKeyRotationOperator.template_fields
    for known in (None, "", "variable", " AWS_Secrets_Manager "):
        assert PioneerKeyRotationOperator(task_id="rotate", key_store=known).key_store == known


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


def _run() -> Run:
    """A run of the default rotation (no connection is read: the steps under test need none)."""
    policy = Policy("pioneer_default", "airflow-pioneer_api_key")
    return Run(policy, VariableKeyStore("pioneer_api_key"), None, logging.getLogger(__name__))  # type: ignore[arg-type]


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
    from airflow_provider_pioneer.rotation import steps
    from airflow_provider_pioneer.rotation import variable as variable_store

    new_key = "pio_sk_unit_test_new_key_value_9876543210"
    before = parse_stored(build_document(KEY, "old", None, []))
    pre = Preflight(KEY, "Variable", before, "old", "Variable", ({"name": "old"},), ())
    new = NewKey(new_key, "airflow-pioneer_api_key-20250101T000000000000Z", "t")

    variable = _ShadowedVariable(writes_fail=restore_fails)
    monkeypatch.setattr(variable_store, "Variable", variable)  # the restore's write
    run = _run()
    discarded: list[str] = []
    monkeypatch.setattr(run, "discard", lambda name: (discarded.append(name), (True, "Key was deleted."))[1])

    with pytest.raises(AirflowFailException, match="shadows it") as failure:
        steps._unchanged(run, new, pre, None)

    message = str(failure.value)
    assert new_key not in message and KEY not in message
    if restore_fails:
        assert discarded == []  # the metastore may hold it: it must stay alive
        assert f"the metastore may hold the new key {new.name!r}: it was kept alive" in message
    else:
        assert discarded == [new.name]
        assert variable.written == [("pioneer_api_key", before.raw)]
        assert "was restored" in message


@pytest.mark.parametrize(
    "held, revoked, failed",
    [
        (build_document(KEY, "x", None, []), ["y"], []),  # never the name the Variable holds now
        (KEY, [], ["x", "y"]),  # a plain key: which key it is cannot be told, so nothing is proven unused
    ],
    ids=["document", "plain-key"],
)
def test_each_revocation_rereads_the_variable_and_spares_the_key_it_holds(
    monkeypatch: pytest.MonkeyPatch, held: str, revoked: list[str], failed: list[str]
) -> None:
    from airflow_provider_pioneer.rotation import revoke

    run = _run()
    reads: list[int] = []
    deleted: list[str] = []

    def read(strict: bool = True) -> object:
        reads.append(1)
        return parse_stored(held)

    monkeypatch.setattr(run, "read", read)
    monkeypatch.setattr(run, "delete_key", deleted.append)
    assert revoke.revoke_names(run, ["x", "new", "y", "x"], spare="new") == (revoked, failed)
    assert deleted == revoked
    assert len(reads) == 2  # once per candidate, right before it


def test_a_failed_write_deletes_the_new_key_and_writes_nothing_back(monkeypatch: pytest.MonkeyPatch) -> None:
    # Writing back what preflight read could overwrite the key a concurrent rotation stored since.
    from airflow_provider_pioneer._compat import AirflowException, AirflowFailException
    from airflow_provider_pioneer.rotation import steps
    from airflow_provider_pioneer.rotation import variable as variable_store

    before = parse_stored(build_document(KEY, "old", None, []))
    pre = Preflight(KEY, "Variable", before, "old", "Variable", ({"name": "old"},), ())
    new = NewKey("pio_sk_unit_new_0123456789abcdef", "airflow-pioneer_api_key-20250101T000000000000Z", "t")
    variable = _ShadowedVariable(writes_fail=True)
    monkeypatch.setattr(variable_store, "Variable", variable)
    run = _run()
    monkeypatch.setattr(run, "read", lambda strict=True: before)  # the write did not land
    discarded: list[str] = []
    monkeypatch.setattr(run, "discard", lambda name: (discarded.append(name), (True, "Key was deleted."))[1])

    with pytest.raises(AirflowException, match=r"failed \(RuntimeError\)") as failure:
        steps.store(run, "{}", new, pre, before)

    assert not isinstance(failure.value, AirflowFailException)  # a metastore hiccup: retry
    assert discarded == [new.name] and variable.written == []
    assert "The stored key is unchanged" in str(failure.value)
