"""pytest plugin (entry point ``pioneer_emulator``): the ``pioneer_emulator`` fixture.

Kept import-light: it is loaded into every pytest run of an environment where the
provider is installed, so the server machinery is imported only when the fixture is used.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from airflow_provider_pioneer.testing.server import PioneerEmulator


@pytest.fixture
def pioneer_emulator() -> Iterator[PioneerEmulator]:
    """A running Pioneer emulator with default settings on a free loopback port, stopped afterwards."""
    from airflow_provider_pioneer.testing.server import PioneerEmulator

    with PioneerEmulator() as emulator:
        yield emulator
