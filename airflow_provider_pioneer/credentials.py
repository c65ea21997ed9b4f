"""The API key a client sends: its checks, its header, and its re-read after a 401.

The one seam between the HTTP client and wherever a rotated key is stored: a
:data:`KeyRefresher`, a callable that returns the key as stored *now*. The client calls it at most
once per call, after a 401; the hook passes one that re-reads the connection's key Variable (a
secrets backend or another key store plugs in the same way). Nothing here reads a store itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from airflow_provider_pioneer.exceptions import PioneerConfigurationError
from airflow_provider_pioneer.redaction import Redactor

__all__ = ["AUTH_SCHEMES", "CurrentKey", "KeyRefresher", "auth_header", "check_api_key"]

log = logging.getLogger(__name__)

#: How the key is sent: ``X-API-Key: <key>`` (the default) or ``Authorization: Bearer <key>``.
AUTH_SCHEMES = ("x-api-key", "bearer")

#: Returns the key as stored now (a rotated one), or ``None`` when there is none to read.
KeyRefresher = Callable[[], "str | None"]


def check_api_key(api_key: str, where: str = "the connection") -> str:
    """The key as it can be sent: surrounding whitespace stripped; refused if it cannot be a header value.

    :param api_key: the key as configured.
    :param where: where it came from, for the message (never the key itself).
    :raises PioneerConfigurationError: for an empty key or one with spaces, control or non-ASCII characters.
    """
    key = (api_key or "").strip()
    if not key:
        raise PioneerConfigurationError(
            f"No Pioneer API key in {where}: set the connection's API key field (or its key Variable)."
        )
    if not all("!" <= ch <= "~" for ch in key):
        raise PioneerConfigurationError(
            f"The Pioneer API key in {where} contains spaces, control or non-ASCII characters, which an "
            "HTTP header cannot carry (a paste from a document?). Paste the key again as plain text."
        )
    return key


def auth_header(auth_scheme: str, api_key: str) -> dict[str, str]:
    """The header that carries ``api_key`` under ``auth_scheme`` (one of :data:`AUTH_SCHEMES`)."""
    if auth_scheme.lower() == "bearer":
        return {"Authorization": f"Bearer {api_key}"}
    return {"X-API-Key": api_key}


class CurrentKey:
    """The key one client sends, shared by its threads; swapped by a rotation or a 401's re-read.

    :param api_key: the key to start with (checked with :func:`check_api_key`).
    :param redactor: learns every key this holder ever holds, so none reaches a message.
    :param refresh: the :data:`KeyRefresher` called after a 401, or ``None``: a 401 is final.
    """

    def __init__(self, api_key: str, redactor: Redactor, refresh: KeyRefresher | None = None) -> None:
        self._redactor = redactor
        self._refresh = refresh
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self._key = ""
        self.set(api_key, "the connection")

    def get(self) -> str:
        """The key to send now."""
        with self._lock:
            return self._key

    def set(self, api_key: str, where: str = "the rotated key") -> None:
        """Send ``api_key`` from now on (known to the redactor before it is even checked)."""
        self._redactor.add(api_key)
        key = check_api_key(api_key, where)
        self._redactor.add(key)
        with self._lock:
            self._key = key

    def replaced_after_401(self, used_key: str, what: str) -> bool:
        """After ``used_key`` met a 401: ``True`` if a different key is now in use (send again with it).

        One re-read at a time: when many threads meet the revoked key together, the first one reads
        the new key and the others just use it (the store is read once, not per thread).

        :param used_key: the key the rejected request carried.
        :param what: the call, for the log line.
        """
        if self._refresh is None:
            return False
        with self._refresh_lock:
            if self.get() != used_key:
                return True  # another thread already switched to the rotated key
            fresh = self._refresh()
            if not fresh or fresh == used_key:
                return False
            self.set(fresh)
        log.info("Pioneer %s: key rejected; retrying once with the newly rotated key.", what)
        return True
