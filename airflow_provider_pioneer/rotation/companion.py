"""The key rotation's second, unmasked Variable: which key the key Variable holds, readable in the UI.

Airflow masks every value of a Variable whose name looks sensitive (``api_key``, ``secret``,
``token``...): for the rotation's JSON document the UI's edit dialog shows ``"***"`` for the key
*and* for ``name``, ``created_at`` and ``pending_revoke``, and saving the dialog writes those
``***`` back. The key is then lost, and so is the one thing a user needs to clean up after it: its
name on Pioneer. So the rotation also writes ``{variable} with api_key -> key, + _rotation``
(``pioneer_api_key`` -> ``pioneer_key_rotation``), which holds the name, dates and pending
revocations, never the key, under a name Airflow does not mask. Standard library only.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from airflow_provider_pioneer import safe_json

__all__ = ["build_info", "info_variable_name", "lost_key_name"]

_API_KEY = re.compile("api_?key", re.IGNORECASE)
# Airflow's default sensitive words (airflow.sdk._shared.secrets_masker): a name holding one is masked.
_SENSITIVE = (
    "access_token", "api_key", "apikey", "authorization", "passphrase", "passwd", "password",
    "private_key", "secret", "token", "keyfile_dict", "service_account",
)  # fmt: skip


def info_variable_name(variable_key: str) -> str | None:
    """The unmasked companion of the key Variable, or ``None`` if no unmasked name can be derived.

    ``pioneer_api_key`` -> ``pioneer_key_rotation``; ``pioneer_api_key_staging`` ->
    ``pioneer_key_staging_rotation``.
    """
    name = _API_KEY.sub("key", variable_key) + "_rotation"
    lowered = name.lower()
    return None if any(word in lowered for word in _SENSITIVE) else name


def build_info(
    variable_key: str,
    name: str,
    created_at: str | None,
    previous_name: str | None,
    pending_revoke: list[str],
    **extra: Any,
) -> str:
    """The companion Variable's value (JSON): the stored key's name and dates, never the key."""
    doc: dict[str, Any] = {
        "variable": variable_key,
        "name": name,
        "created_at": created_at,
        "previous_name": previous_name,
        "pending_revoke": list(dict.fromkeys(pending_revoke)),
        "written_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "note": (
            f"Written by PioneerKeyRotationOperator: Variable {variable_key!r} holds the key named "
            "here. Do not edit; if that Variable's value is lost (saved from the UI, which masks it), "
            "this says which key it held."
        ),
    }
    doc.update(extra)
    return json.dumps(doc, indent=2)


def lost_key_name(info_value: Any, variable_key: str) -> str | None:
    """The key name the companion Variable records for ``variable_key``, or ``None`` (absent, unreadable)."""
    if not isinstance(info_value, str):
        return None
    try:
        doc = safe_json.loads(info_value)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("variable") != variable_key:
        return None
    name = doc.get("name")
    return name if isinstance(name, str) and name.strip("* ") else None
