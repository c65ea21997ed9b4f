"""Airflow registration: the provider dict validates against Airflow's own schemas."""

from __future__ import annotations

import json
from importlib import resources
from importlib.metadata import entry_points

import jsonschema

from airflow_provider_pioneer import __version__
from airflow_provider_pioneer.get_provider_info import get_provider_info


def _airflow_schema(name: str) -> dict:
    return json.loads(resources.files("airflow").joinpath(name).read_text())


def test_provider_info_validates_against_airflows_schema() -> None:
    jsonschema.validate(get_provider_info(), _airflow_schema("provider_info.schema.json"))


def test_package_name_is_the_distribution_and_entry_point_is_registered() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-pioneer"
    assert info["versions"] == [__version__]
    eps = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_pioneer")
    ]
    assert len(eps) == 1 and eps[0].load() is get_provider_info


def test_connection_form_matches_airflows_form_schema() -> None:
    (conn,) = get_provider_info()["connection-types"]
    assert conn["connection-type"] == "pioneer"
    assert conn["hook-class-name"] == "airflow_provider_pioneer.hooks.pioneer.PioneerHook"
    behaviour = conn["ui-field-behaviour"]
    as_python = {
        "hidden_fields": behaviour["hidden-fields"],
        "relabeling": behaviour["relabeling"],
        "placeholders": behaviour["placeholders"],
    }
    jsonschema.validate(as_python, _airflow_schema("customized_form_field_behaviours.schema.json"))
    assert behaviour["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert behaviour["placeholders"]["host"] == "https://api.pioneer.ai"
    fields = conn["conn-fields"]
    assert set(fields) >= {"key_variable", "timeout", "max_retries", "key_name", "allow_insecure_http"}
    assert fields["timeout"]["schema"]["type"] == ["number", "null"]
    assert fields["max_retries"]["schema"]["type"] == ["integer", "null"]
    assert fields["allow_insecure_http"]["schema"]["type"] == ["boolean", "null"]
    for spec in fields.values():  # each field's schema is itself a valid JSON schema
        jsonschema.Draft7Validator.check_schema(spec["schema"])


def test_every_class_and_module_named_in_provider_info_imports() -> None:
    import importlib

    from airflow.sdk import BaseHook, BaseOperatorLink

    info = get_provider_info()
    for group in ("hooks", "operators", "triggers"):
        for entry in info[group]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    (conn,) = info["connection-types"]
    module, _, name = conn["hook-class-name"].rpartition(".")
    hook = getattr(importlib.import_module(module), name)
    assert issubclass(hook, BaseHook) and hook.conn_type == "pioneer"
    for path in info["extra-links"]:
        module, _, name = path.rpartition(".")
        assert issubclass(getattr(importlib.import_module(module), name), BaseOperatorLink)


def test_the_training_sensor_is_registered_under_sensors() -> None:
    import importlib

    from airflow.sdk import BaseSensorOperator

    (entry,) = get_provider_info()["sensors"]
    (module,) = entry["python-modules"]
    sensor = importlib.import_module(module).PioneerTrainingJobSensor
    assert issubclass(sensor, BaseSensorOperator)
    # The old import path keeps working for DAGs written against it.
    from airflow_provider_pioneer.operators.training import PioneerTrainingJobSensor

    assert PioneerTrainingJobSensor is sensor
