"""Transports.  One ``Comm`` interface over websockets (ws://, wss://) and
in-process channels (inproc://); ``connect`` and ``serve`` pick by scheme."""
from trioflow.comm.addressing import normalize_address, parse_address
from trioflow.comm.core import Comm, connect, serve

__all__ = ["Comm", "connect", "serve", "normalize_address", "parse_address"]
