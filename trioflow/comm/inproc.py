"""In-process transport: two memory channels, no sockets, no copies.

Both ends must live on the same trio loop (servers in one process share the
loop thread).  Messages are handed over as Python objects."""
from __future__ import annotations

import math
import uuid

import trio

from trioflow.comm.interface import Comm
from trioflow.errors import CommClosedError

#: address -> (channel of incoming comms, token of the trio run serving there)
_listeners: dict[str, tuple[trio.MemorySendChannel, trio.lowlevel.TrioToken]] = {}


#: at most this many more waiting lists joined to one received batch
_DRAIN = 64


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

    def send_nowait(self, msgs: list) -> bool:
        """Hand ``msgs`` over now; False if the comm is closed (the caller
        queues them instead and learns of the close from ``send``)."""
        if self._closed:
            return False
        try:
            self._send.send_nowait(msgs)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return False
        return True

    async def recv(self) -> list:
        try:
            return await self._recv.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError, trio.BrokenResourceError):
            self._closed = True
            raise CommClosedError(f"connection to {self.peer_address} is closed") from None

    def recv_waiting(self, msgs: list) -> list:
        """``msgs`` (just received) with what else already waits appended, up
        to a bound: messages sent one by one arrive as many small lists, and
        a connection handles them as one batch.  Not for a handshake, which
        must read exactly one message."""
        for _ in range(_DRAIN):
            try:
                more = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError,
                    trio.BrokenResourceError):
                break
            msgs.extend(more)  # each list is the receiver's own (see send)
        return msgs

    async def aclose(self) -> None:
        self._closed = True
        await self._send.aclose()
        await self._recv.aclose()

    @property
    def closed(self) -> bool:
        return self._closed


async def connect(address: str) -> Comm:
    entry = _listeners.get(address)
    if entry is None:
        raise CommClosedError(f"nothing listens at {address}")
    listener, token = entry
    if token is not trio.lowlevel.current_trio_token():
        # trio's memory channels cannot cross from one trio run to another
        raise ValueError(
            f"cannot connect to {address} from this event loop: in-process (inproc://) "
            f"servers are reachable only from the loop that runs them.  Start the cluster "
            f"in this loop (LocalCluster(asynchronous=True) or Client(asynchronous=True)), "
            f"or give it a network address (LocalCluster(protocol='ws') or processes=True)")
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
    entry = (incoming_send, trio.lowlevel.current_trio_token())
    _listeners[address] = entry
    try:
        async with trio.open_nursery() as nursery:
            task_status.started(address)
            async for comm in incoming_recv:
                nursery.start_soon(handler, comm)
    finally:
        if _listeners.get(address) is entry:
            del _listeners[address]
        incoming_send.close()
