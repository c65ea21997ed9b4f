"""Hold the wait for an answer's status line and headers to the call's deadline.

requests' read timeout bounds each socket read, not the whole wait: a server that sends its
headers a byte at a time, each byte within the timeout, holds a call as long as it likes
(http.client accepts 100 header lines of 64 KB each). The client reads bodies itself, in chunks,
checking the deadline between them; headers are read inside http.client, where no check can run.
So while a request is sent and its headers are awaited, one watchdog thread holds the connection,
and shuts its socket if the call's deadline passes first: the blocked read returns at once, and
the client, seeing the deadline passed, reports the deadline instead of an outage.

Use :class:`DeadlineAdapter` for the session and :func:`bounded_by` around each request.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

__all__ = ["DeadlineAdapter", "bounded_by"]

_call = threading.local()


@contextmanager
def bounded_by(deadline: float) -> Iterator[None]:
    """Requests sent by this thread inside the block stop waiting for headers at ``deadline``
    (a ``time.monotonic()`` instant)."""
    outer = getattr(_call, "deadline", None)
    _call.deadline = deadline
    try:
        yield
    finally:
        _call.deadline = outer


class _Watchdog:
    """One daemon thread that shuts the socket of every watched connection whose deadline passed."""

    def __init__(self) -> None:
        self._pid = -1
        self._cond = threading.Condition()
        self._watched: dict[int, tuple[float, HTTPConnection]] = {}
        self._next = 0

    def watch(self, conn: HTTPConnection, deadline: float) -> int:
        with self._cond:
            if self._pid != os.getpid():  # first use, or a forked child (threads do not survive fork)
                self._pid, self._watched = os.getpid(), {}
                threading.Thread(target=self._run, name="pioneer-deadline", daemon=True).start()
            self._next += 1
            self._watched[self._next] = (deadline, conn)
            self._cond.notify()
            return self._next

    def unwatch(self, token: int) -> None:
        with self._cond:
            self._watched.pop(token, None)

    def _run(self) -> None:
        pid = os.getpid()
        with self._cond:
            while self._pid == pid:
                now = time.monotonic()
                for token, (deadline, conn) in list(self._watched.items()):
                    if deadline <= now:
                        del self._watched[token]
                        _shut(conn)
                soonest = min((deadline for deadline, _ in self._watched.values()), default=None)
                self._cond.wait(None if soonest is None else max(0.0, soonest - now))


def _shut(conn: HTTPConnection) -> None:
    conn._pioneer_cut = True  # type: ignore[attr-defined]
    sock = conn.sock
    if sock is None:
        return
    # The plain socket's shutdown even for TLS: it wakes a read blocked inside the TLS layer.
    with contextlib.suppress(OSError):  # already closed
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


class _Watched:
    """Mixed into urllib3's connections: watched from sending the request to having its headers."""

    _pioneer_watch: int | None = None
    _pioneer_cut = False

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._pioneer_cut = False
        deadline = getattr(_call, "deadline", None)
        if deadline is not None:
            self._pioneer_watch = _WATCHDOG.watch(self, deadline)  # type: ignore[arg-type]
        try:
            super().request(*args, **kwargs)  # type: ignore[misc]
        except BaseException:
            self._unwatch()
            raise

    def getresponse(self) -> Any:
        try:
            response = super().getresponse()  # type: ignore[misc]
        except Exception:
            if not self._pioneer_cut:
                raise
            response = None
        finally:
            self._unwatch()
        if self._pioneer_cut:
            # A shut socket reads as the end of the headers: what came before is no answer.
            # A timeout, which urllib3 and requests report as a read timeout.
            raise TimeoutError("the call's deadline passed while the headers were arriving")
        return response

    def _unwatch(self) -> None:
        if self._pioneer_watch is not None:
            _WATCHDOG.unwatch(self._pioneer_watch)
            self._pioneer_watch = None


class _HTTPConnection(_Watched, HTTPConnection):
    pass


class _HTTPSConnection(_Watched, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class DeadlineAdapter(HTTPAdapter):
    """An ``HTTPAdapter`` whose connections stop waiting for headers at the :func:`bounded_by` deadline."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager
