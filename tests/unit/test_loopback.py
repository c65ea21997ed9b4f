"""One loopback rule for the client's URL checks and the emulator (they disagreed on ``[::1]``)."""

from __future__ import annotations

import pytest

from airflow_provider_pioneer import urls
from airflow_provider_pioneer.testing import server


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("[::2]", False),
    ],
)
def test_the_client_and_the_emulator_answer_alike(host: str, expected: bool) -> None:
    assert urls.is_loopback(host) is expected
    assert server.is_loopback(host) is expected


def test_the_emulator_takes_a_bracketed_ipv6_loopback_and_refuses_other_hosts() -> None:
    assert server.PioneerEmulator(host="[::1]").host == "::1"
    with pytest.raises(ValueError, match="only binds loopback"):
        server.PioneerEmulator(host="10.0.0.1")
