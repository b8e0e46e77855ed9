"""Where a dashboard listens: dask's address spellings, and a free port when
the asked-for one is taken."""
from __future__ import annotations

import errno
import logging
import socket

logger = logging.getLogger("trioflow.dashboard")


def parse_address(address, default_host: str) -> tuple[str, int]:
    """``":8787"``, ``"host:8787"``, ``8787``, ``"http://host:8787"`` ->
    ``(host, port)``; no host means ``default_host``."""
    text = str(address).strip()
    if "://" in text:
        text = text.split("://", 1)[1].split("/", 1)[0]
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "", text
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"dashboard_address {address!r} is not ':port' or 'host:port' "
                         f"(e.g. ':8787'; None turns the dashboard off)") from None
    if not 0 <= number < 65536:
        raise ValueError(f"dashboard_address {address!r}: port {number} is out of range")
    return host.strip("[]") or default_host, number


def bind(host: str, port: int, what: str = "dashboard") -> socket.socket:
    """A bound (not yet listening) TCP socket on ``host:port``; if that port
    is taken, on a free one, with a warning that names it (as dask does)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or port == 0:
                raise
            sock.bind((host, 0))
            logger.warning("port %d is already in use; the %s is on port %d instead",
                           port, what, sock.getsockname()[1])
    except BaseException:
        sock.close()
        raise
    return sock


def server_host(server_address: str | None) -> str:
    """The host a server's comm listener uses (127.0.0.1 for inproc)."""
    if not server_address or server_address.startswith("inproc://"):
        return "127.0.0.1"
    return server_address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")
