"""The emulator's server libraries come with the ``testing`` extra: say so when they are missing."""

from __future__ import annotations

import importlib.util

#: What the emulator's HTTP server imports (``app.py``, ``server.py``); all in the ``testing`` extra.
SERVER_MODULES = ("fastapi", "pydantic", "starlette", "uvicorn")

INSTALL_HINT = "pip install 'airflow-provider-pioneer[testing]'"


def require_server_dependencies() -> None:
    """Raise a short, actionable error when a library the emulator's server needs is not installed.

    :raises ModuleNotFoundError: naming the missing libraries and the extra that brings them.
    """
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ModuleNotFoundError(
            f"The Pioneer emulator needs {', '.join(missing)}, which are not installed: {INSTALL_HINT}",
            name=missing[0],
        )
