"""pytest plugin (entry point ``pioneer_emulator``): the ``pioneer_emulator`` fixtures.

Kept import-light: it is loaded into every pytest run of an environment where the
provider is installed, so the server machinery is imported only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.server import PioneerEmulator


@pytest.fixture
def pioneer_emulator() -> Iterator[PioneerEmulator]:
    """A running Pioneer emulator speaking today's API (profile ``current``) with default settings
    on a free loopback port, stopped afterwards."""
    from airflow_provider_pioneer.testing.server import PioneerEmulator

    with PioneerEmulator() as emulator:
        yield emulator


@pytest.fixture
def pioneer_emulator_legacy() -> Iterator[PioneerEmulator]:
    """Like ``pioneer_emulator``, speaking the June 2026 API (profile ``legacy``: 1,200 rpm per key,
    ``detail`` strings, the 429 daily spend cap, ``X-API-Key`` only)."""
    from airflow_provider_pioneer.testing.server import PioneerEmulator

    with PioneerEmulator(api_profile="legacy") as emulator:
        yield emulator
