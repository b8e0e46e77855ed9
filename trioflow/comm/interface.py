"""The one interface every transport implements (ws, wss, inproc); the
transports import it from here, and core.py picks one by scheme."""
from __future__ import annotations


class Comm:
    """A message connection: ``send`` takes a batch (list of message dicts),
    ``recv`` returns the next batch.  Both raise ``CommClosedError`` once the
    connection is gone; ``recv`` raises ``ProtocolError`` on a malformed frame."""

    peer_address: str = ""
    local_address: str = ""
    #: what the peer said about itself in the handshake
    peer_info: dict = {}
    #: the token this end proved to the server it connected to (None: none asked)
    token: str | None = None

    async def send(self, msgs: list) -> None:
        raise NotImplementedError

    async def recv(self) -> list:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def handshake_done(self, trusted: bool) -> None:
        """The handshake succeeded: lift the small limit on what the peer may
        send until then.  ``trusted``: the peer proved the shared token (or
        is the server this process chose to connect to)."""

    @property
    def closed(self) -> bool:
        raise NotImplementedError
