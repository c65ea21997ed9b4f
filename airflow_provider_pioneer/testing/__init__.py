"""Pioneer emulator: a real HTTP server on loopback that speaks Pioneer's API, like moto for AWS.

>>> with PioneerEmulator() as emu:  # doctest: +SKIP
...     requests.post(f"{emu.url}/inference", headers={"X-API-Key": emu.api_key}, json=...)

Names are resolved lazily so that importing this package (e.g. by the pytest plugin) stays cheap:
FastAPI and uvicorn load only when a server starts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.faults import BAD_RESULTS, ECHO_ENVELOPES, FAULT_KINDS
    from airflow_provider_pioneer.testing.profiles import API_PROFILES
    from airflow_provider_pioneer.testing.server import EmulatorControl, PioneerEmulator
    from airflow_provider_pioneer.testing.state import (
        BASE_MODELS,
        BOOTSTRAP_KEY_NAME,
        UNSERVABLE_PREFIX,
        EmulatorConfig,
        EmulatorState,
        count_tokens,
    )

__all__ = [
    "API_PROFILES",
    "BAD_RESULTS",
    "BASE_MODELS",
    "BOOTSTRAP_KEY_NAME",
    "ECHO_ENVELOPES",
    "FAULT_KINDS",
    "UNSERVABLE_PREFIX",
    "EmulatorConfig",
    "EmulatorControl",
    "EmulatorState",
    "PioneerEmulator",
    "count_tokens",
    "create_app",
    "extract",
]

_WHERE = {
    "API_PROFILES": "profiles",
    "BAD_RESULTS": "faults",
    "ECHO_ENVELOPES": "faults",
    "FAULT_KINDS": "faults",
    "UNSERVABLE_PREFIX": "state",
    "PioneerEmulator": "server",
    "EmulatorControl": "server",
    "BASE_MODELS": "state",
    "BOOTSTRAP_KEY_NAME": "state",
    "EmulatorConfig": "state",
    "EmulatorState": "state",
    "count_tokens": "state",
    "create_app": "app",
    "extract": "extractor",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
