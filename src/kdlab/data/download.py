"""Fetching a data set archive without ever hanging on a machine that has no network."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlparse

# Seconds to wait for a connection to the download host, and for any read of the download.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0


def host_reachable(url: str, timeout: float = CONNECT_TIMEOUT) -> bool:
    """Whether a TCP connection to `url`'s host opens within `timeout` seconds.

    Runs in a daemon thread because a DNS lookup ignores socket timeouts and can block
    for minutes when there is no network.
    """
    parts = urlparse(url)
    address = (parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
    opened: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(opened)


@contextmanager
def socket_timeout(seconds: float = READ_TIMEOUT) -> Iterator[None]:
    """Bound every socket operation inside (libraries like torchvision's set no timeout)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)
