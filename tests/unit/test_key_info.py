"""The rotation's unmasked companion Variable (pure logic): its name is one Airflow does not mask,
it never holds the key, and only a record of the same key Variable names a lost key."""

from __future__ import annotations

import json

import pytest

from airflow_provider_pioneer.key_info import build_info, info_variable_name, lost_key_name


@pytest.mark.parametrize(
    ("variable", "companion"),
    [
        ("pioneer_api_key", "pioneer_key_rotation"),
        ("pioneer_api_key_staging", "pioneer_key_staging_rotation"),
        ("team_apikey", "team_key_rotation"),
        ("pioneer_secret_api_key", None),  # still sensitive after the change: no companion
    ],
)
def test_the_companion_name_is_not_one_airflow_masks(variable: str, companion: str | None) -> None:
    from airflow.sdk._shared.secrets_masker import should_hide_value_for_key

    assert info_variable_name(variable) == companion
    assert should_hide_value_for_key(variable)
    if companion is not None:
        assert not should_hide_value_for_key(companion)


def test_the_record_names_the_key_and_holds_no_key() -> None:
    info = build_info("pioneer_api_key", "airflow-x-1", "2026-01-01T00:00:00Z", "bootstrap", ["bootstrap"])
    doc = json.loads(info)
    assert "api_key" not in doc and doc["name"] == "airflow-x-1"
    assert lost_key_name(info, "pioneer_api_key") == "airflow-x-1"
    assert lost_key_name(info, "pioneer_api_key_staging") is None  # another Variable's record
    masked = json.dumps({**doc, "name": "***"})
    assert lost_key_name(masked, "pioneer_api_key") is None
    assert (
        lost_key_name("{broken", "pioneer_api_key") is None and lost_key_name(None, "pioneer_api_key") is None
    )
