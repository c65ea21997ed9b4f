"""Base-URL policy: where the API key may be sent. Cheap to import (DAG files import the hook)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from airflow_provider_pioneer.exceptions import PioneerConfigurationError

__all__ = ["DEFAULT_BASE_URL", "is_loopback", "validate_base_url"]

DEFAULT_BASE_URL = "https://api.pioneer.ai"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


def is_loopback(host: str) -> bool:
    """True for names and addresses that never leave this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def validate_base_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """Check and normalise a base URL; plain ``http`` only for loopback unless explicitly allowed.

    :raises PioneerConfigurationError: when the URL cannot be used safely.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PioneerConfigurationError(
            f"Pioneer base URL {url!r} is not an http(s) URL. Set the connection host to e.g. {DEFAULT_BASE_URL}."
        )
    if parts.username or parts.password:
        raise PioneerConfigurationError(
            "Pioneer base URL must not carry credentials; put the API key in the connection's API key field."
        )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname):
        raise PioneerConfigurationError(
            f"Refusing to send the API key over plain http to {parts.hostname}: use https://, "
            "or set the connection extra allow_insecure_http to true if that host is trusted."
        )
    return url.strip().rstrip("/")
