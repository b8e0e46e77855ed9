"""Address strings: ``ws://host:port`` (default), ``wss://``, ``inproc://name``.
A bare ``host:port`` and dask's ``tcp://host:port`` mean ws."""
from __future__ import annotations

DEFAULT_PORT = 8786


def normalize_address(address: str) -> str:
    if not isinstance(address, str) or not address:
        raise ValueError(f"not an address: {address!r}")
    if "://" not in address:
        address = "ws://" + address
    scheme, rest = address.split("://", 1)
    if scheme in ("tcp", "ws"):
        scheme = "ws"
    elif scheme == "tls":
        scheme = "wss"
    elif scheme not in ("wss", "inproc"):
        raise ValueError(f"unknown scheme {scheme!r} in address {address!r}: "
                         "use ws://, wss://, tcp:// or inproc://")
    rest = rest.rstrip("/")
    if scheme != "inproc" and ":" not in rest.rsplit("]", 1)[-1]:
        rest = f"{rest}:{DEFAULT_PORT}"
    return f"{scheme}://{rest}"


def parse_address(address: str) -> tuple[str, str, int]:
    """``(scheme, host, port)``; port is 0 for inproc."""
    address = normalize_address(address)
    scheme, rest = address.split("://", 1)
    if scheme == "inproc":
        return scheme, rest, 0
    host, _, port = rest.rpartition(":")
    return scheme, host.strip("[]"), int(port)
