"""What Airflow reads about this provider, through the ``apache_airflow_provider`` entry point.

Kept import-free (no Airflow, no requests) because ProvidersManager calls it
for every installed provider when the UI or CLI starts.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_pioneer import __version__

HOOK_CLASS = "airflow_provider_pioneer.hooks.pioneer.PioneerHook"

#: The Airflow 3 connection form: the password is the API key, host is the base URL.
UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden_fields": ["schema", "port", "login"],
    "relabeling": {"host": "Base URL", "password": "API key"},
    "placeholders": {
        "host": "https://api.pioneer.ai",
        "password": "pio_sk_... or fast_sk_...",
        "extra": '{"key_variable": "pioneer_api_key", "timeout": 60, "max_retries": 5}',
    },
}

CONN_FIELDS: dict[str, Any] = {
    # Not "api_key_variable": Airflow masks the values of extras whose names look sensitive, and
    # the Variable's name would then read '***' in every log line and rendered field.
    "key_variable": {
        "label": "Key Variable",
        "description": "Name of an Airflow Variable holding the current key (written by key rotation); "
        "when it exists it wins over the API key field.",
        "schema": {"type": ["string", "null"]},
    },
    # Not "secret_id": Airflow masks the values of extras whose names contain "secret".
    "key_store": {
        "label": "Key store",
        "description": "Where the rotated key is kept: variable (the Key Variable, default) or "
        "aws_secrets_manager (the secret Key store id names).",
        "schema": {"type": ["string", "null"], "enum": ["variable", "aws_secrets_manager", None]},
    },
    "key_store_id": {
        "label": "Key store id",
        "description": "With key_store aws_secrets_manager: the secret's name or ARN.",
        "schema": {"type": ["string", "null"]},
    },
    "aws_conn_id": {
        "label": "AWS connection",
        "description": "With key_store aws_secrets_manager: the Airflow AWS connection (default aws_default).",
        "schema": {"type": ["string", "null"]},
    },
    "region_name": {
        "label": "AWS region",
        "description": "With key_store aws_secrets_manager: overrides the AWS connection's region.",
        "schema": {"type": ["string", "null"]},
    },
    "key_name": {
        "label": "Key name",
        "description": "Pioneer-side name of the key in the API key field, so the first rotation can revoke it.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Timeout (s)",
        "description": "Seconds to wait for each response.",
        "schema": {"type": ["number", "null"], "default": 60, "exclusiveMinimum": 0},
    },
    "max_retries": {
        "label": "Max retries",
        "description": "Retries of connection errors, 5xx and 429 (never of 401/402/403/404/409/422).",
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
    },
    "deadline": {
        "label": "Deadline per call (s)",
        "description": "Total seconds one call may take, retries and waits included.",
        "schema": {"type": ["number", "null"], "default": 600, "exclusiveMinimum": 0},
    },
    "allow_insecure_http": {
        "label": "Allow plain http",
        "description": "Send the key over http:// to a non-loopback host. Leave off outside a trusted network.",
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "auth_scheme": {
        "label": "Send the key as",
        "description": "x-api-key (the X-API-Key header, default) or bearer (Authorization: Bearer).",
        "schema": {"type": ["string", "null"], "enum": ["x-api-key", "bearer", None], "default": "x-api-key"},
    },
    "warmup_timeout": {
        "label": "Warm-up budget (s)",
        "description": "Total seconds a task waits for a warming model (HTTP 425) to come up.",
        "schema": {"type": ["number", "null"], "default": 600, "minimum": 0},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Provider metadata in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-pioneer",
        "name": "Pioneer",
        "description": "Pioneer (GLiNER entity extraction, docs.pioneer.ai): batch inference, API-key rotation "
        "and the model lifecycle (datasets, fine-tuning, evaluation).",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Pioneer",
                "external-doc-url": "https://docs.pioneer.ai",
                "tags": ["software"],
            }
        ],
        "hooks": [
            {"integration-name": "Pioneer", "python-modules": ["airflow_provider_pioneer.hooks.pioneer"]}
        ],
        "operators": [
            {
                "integration-name": "Pioneer",
                "python-modules": [
                    "airflow_provider_pioneer.operators.inference",
                    "airflow_provider_pioneer.operators.key_rotation",
                    "airflow_provider_pioneer.operators.datasets",
                    "airflow_provider_pioneer.operators.training",
                    "airflow_provider_pioneer.operators.evaluation",
                    "airflow_provider_pioneer.operators.feedback",
                ],
            }
        ],
        "sensors": [
            {"integration-name": "Pioneer", "python-modules": ["airflow_provider_pioneer.sensors.training"]}
        ],
        "triggers": [
            {"integration-name": "Pioneer", "python-modules": ["airflow_provider_pioneer.triggers.lifecycle"]}
        ],
        "connection-types": [
            {
                "connection-type": "pioneer",
                "hook-class-name": HOOK_CLASS,
                "hook-name": "Pioneer",
                "conn-fields": CONN_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": UI_FIELD_BEHAVIOUR["hidden_fields"],
                    "relabeling": UI_FIELD_BEHAVIOUR["relabeling"],
                    "placeholders": UI_FIELD_BEHAVIOUR["placeholders"],
                },
            }
        ],
        "extra-links": ["airflow_provider_pioneer.links.PioneerModelLink"],
        # Read by the Pioneer view (airflow_provider_pioneer/ui), a plugin registered through the
        # airflow.plugins entry point (a "plugins" entry here would load only without lazy discovery).
        "config": {
            "pioneer": {
                "description": "The Pioneer view in the Airflow UI (Browse > Pioneer).",
                "options": {
                    "key_max_age_days": {
                        "description": "The view warns when the API key a rotation Variable holds is older "
                        "than this many days.",
                        "version_added": "0.1.0",
                        "type": "integer",
                        "example": "30",
                        "default": "30",
                    }
                },
            }
        },
    }
