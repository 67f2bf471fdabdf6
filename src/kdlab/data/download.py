"""Fetching a data set archive without ever hanging on a machine that has no network."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from kdlab.errors import KdlabError

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


def download_or_fail(
    urls: Sequence[str], root: Path, failed: KdlabError, fetch: Callable[[], None]
) -> None:
    """Run `fetch` (a download into `root`) with bounded sockets; raise `failed` at once when
    no host in `urls` answers, or when the download breaks: never a hang, never a traceback."""
    if not any(host_reachable(url) for url in urls):
        raise failed
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise KdlabError(f"cannot create {root} ({err.strerror}): set data.root=DIR") from err
    try:
        with socket_timeout():
            fetch()
    # URLError is an OSError, a bad md5 a RuntimeError, a truncated .gz an EOFError.
    except (OSError, RuntimeError, EOFError) as err:
        raise failed from err
