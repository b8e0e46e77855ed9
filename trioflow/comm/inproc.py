"""In-process transport: two memory channels, no sockets, no copies.

Both ends must live on the same trio loop (servers in one process share the
loop thread).  Messages are handed over as Python objects."""
from __future__ import annotations

import math
import uuid

import trio

from trioflow.comm.core import Comm
from trioflow.errors import CommClosedError

_listeners: dict[str, trio.MemorySendChannel] = {}


def new_address() -> str:
    return f"inproc://{uuid.uuid4().hex[:12]}"


class InprocComm(Comm):
    def __init__(self, send_channel, receive_channel, local, peer):
        self._send = send_channel
        self._recv = receive_channel
        self.local_address = local
        self.peer_address = peer
        self._closed = False

    async def send(self, msgs: list) -> None:
        if self._closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed")
        try:
            self._send.send_nowait(list(msgs))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = True
            raise CommClosedError(f"connection to {self.peer_address} is closed") from None
        await trio.lowlevel.checkpoint()

    async def recv(self) -> list:
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            self._closed = True
            raise CommClosedError(f"connection to {self.peer_address} is closed") from None

    async def aclose(self) -> None:
        self._closed = True
        await self._send.aclose()
        await self._recv.aclose()

    @property
    def closed(self) -> bool:
        return self._closed


async def connect(address: str) -> Comm:
    listener = _listeners.get(address)
    if listener is None:
        raise CommClosedError(f"nothing listens at {address}")
    a_send, b_recv = trio.open_memory_channel(math.inf)
    b_send, a_recv = trio.open_memory_channel(math.inf)
    here = new_address()
    try:
        listener.send_nowait(InprocComm(b_send, b_recv, address, here))
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        raise CommClosedError(f"nothing listens at {address}") from None
    return InprocComm(a_send, a_recv, here, address)


async def serve(address: str, handler, task_status=trio.TASK_STATUS_IGNORED):
    incoming_send, incoming_recv = trio.open_memory_channel(math.inf)
    _listeners[address] = incoming_send
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(address)
            async for comm in incoming_recv:
                nursery.start_soon(handler, comm)
    finally:
        if _listeners.get(address) is incoming_send:
            del _listeners[address]
        incoming_send.close()
