"""Whether a host never leaves this machine: one answer for the client's URL checks and the emulator.

Dependency-free on purpose: the emulator imports it without loading Airflow.
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback"]

_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """True for names and addresses that never leave this machine (``[::1]`` as ``::1``)."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
