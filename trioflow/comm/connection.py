"""A message connection with batching and request/reply on top of a Comm.

``send`` queues a message; one sender task drains everything queued into a
single batch whenever the comm is free, so batching costs nothing when idle
and grows under load.  ``request`` sends a message with a request id and
waits for the matching ``{"op": "reply"}``.  Every other incoming message is
passed, in order, to ``handler``, after it was checked against ``accepts``
(a ``protocol.messages.Accepts``): a message that does not fit closes the
connection with one log line, and the handler never sees it.
"""
from __future__ import annotations

import logging
from itertools import count
from typing import Callable

import trio

from trioflow.comm.interface import Comm
from trioflow.errors import CommClosedError, ProtocolError
from trioflow.protocol.framing import UnencodableMessage, encode_batch
from trioflow.protocol.messages import CONNECTION_OPS, Accepts, BadMessage

logger = logging.getLogger("trioflow.comm")

#: at most about this many items in one batch (see Connection._next_batch)
BATCH_ITEMS = 4_000


class Connection:
    def __init__(self, comm: Comm, handler: Callable[[dict], None] | None = None,
                 accepts: Accepts | None = None):
        self.comm = comm
        self.handler = handler
        # without a schema of its own (a client's end), replies are still checked
        self.accepts = accepts if accepts is not None else _REPLIES_ONLY
        self._any_op = accepts is None
        self._inproc = comm.peer_address.startswith("inproc://")
        # an in-process comm takes a message without awaiting (see send)
        self._send_now = getattr(comm, "send_nowait", None) if self._inproc else None
        self._recv_waiting = getattr(comm, "recv_waiting", None) if self._inproc else None
        self._buffer: list = []
        self._wake = trio.Event()
        self._rids = count(1)
        self._pending: dict[int, list] = {}
        self._abandoned: dict[int, Callable] = {}
        self._closed = False
        self._done = trio.Event()
        self.close_reason = ""
        # messages queued / handed to the comm so far, for flush()
        self._queued = 0
        self._handed_over = 0
        self._progress = trio.Event()

    @property
    def peer_address(self) -> str:
        return self.comm.peer_address

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, msg: dict) -> None:
        if self._closed:
            return
        self._queued += 1
        if self._send_now is not None and not self._buffer and self._send_now([msg]):
            # nothing queued before it: handing it over now keeps the order
            # and saves the peer a scheduling round (the sender task's)
            self._handed_over += 1
            self._progress.set()
            self._progress = trio.Event()
            return
        self._buffer.append(msg)
        self._wake.set()

    async def flush(self) -> None:
        """Return once every message sent so far has been handed to the
        transport (for a socket: is in the kernel, so it is delivered even if
        this process dies right after), or the connection has closed."""
        target = self._queued
        while self._handed_over < target and not self._done.is_set():
            await self._progress.wait()

    async def request(self, msg: dict, on_abandoned: Callable[[dict], None] | None = None):
        """Send ``msg`` and return the ``result`` of its reply.  A reply with an
        ``error`` re-raises it; a closed connection raises CommClosedError.

        If the caller is cancelled before the reply comes, the peer is asked to
        cancel the request (``cancel-request``), and a reply that was already
        on its way is passed to ``on_abandoned`` (to undo what it did, e.g.
        put a taken item back)."""
        if self._closed:
            raise CommClosedError(f"connection to {self.peer_address} is closed: {self.close_reason}")
        rid = next(self._rids)
        slot = [trio.Event(), None]
        self._pending[rid] = slot
        self.send({**msg, "rid": rid})
        try:
            await slot[0].wait()
        except BaseException:
            if slot[1] is not None:
                if on_abandoned is not None and "error" not in slot[1]:
                    on_abandoned(slot[1].get("result"))
            else:
                self.send({"op": "cancel-request", "rid": rid})
                if on_abandoned is not None:
                    self._abandoned[rid] = on_abandoned
            raise
        finally:
            self._pending.pop(rid, None)
        reply = slot[1]
        if reply is None:
            raise CommClosedError(f"connection to {self.peer_address} closed while waiting "
                                  f"for a reply to {msg.get('op')!r}: {self.close_reason}")
        if "error" in reply:
            from trioflow.protocol.exceptions import exception_from_reply
            raise exception_from_reply(reply)
        return reply.get("result")

    def send_request(self, msg: dict, on_reply: Callable[[dict | None], None]) -> None:
        """Send ``msg`` as a request now and return at once; ``on_reply(reply)``
        is called in the loop with the reply message (``"error"`` in it if the
        peer raised), or with None if the connection closes first.  Unlike
        ``request`` from separate tasks, requests sent this way leave in the
        order of the calls (pipelined actor calls rely on it)."""
        if self._closed:
            on_reply(None)
            return
        rid = next(self._rids)
        self._pending[rid] = [_ReplyCallback(self._pending, rid, on_reply), None]
        self.send({**msg, "rid": rid})

    async def run(self) -> None:
        """Send and receive until the peer goes away or ``close`` is called.
        Returns normally then; a malformed frame also ends it, with a log line."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._send_loop, nursery.cancel_scope)
                await self._recv_loop()
                nursery.cancel_scope.cancel()
        finally:
            self._shutdown()
            with trio.CancelScope(shield=True):
                await self.comm.aclose()

    def close(self, reason: str = "closed") -> None:
        if not self._closed:
            self.close_reason = reason
        self._closed = True
        self._wake.set()

    def _shutdown(self):
        self._closed = True
        for slot in list(self._pending.values()):  # reply callbacks remove their slot
            slot[0].set()
        self._done.set()
        self._progress.set()

    async def wait_closed(self):
        await self._done.wait()

    async def _send_loop(self, scope: trio.CancelScope):
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                if self._buffer:
                    batch = self._next_batch()
                    n = len(batch)
                    try:
                        await self.comm.send(batch)
                    except UnencodableMessage:
                        # nothing was written: send what can be encoded, and
                        # fail only the messages that cannot
                        batch = self._drop_unencodable(batch)
                        if batch:
                            await self.comm.send(batch)
                    self._handed_over += n
                    self._progress.set()
                    self._progress = trio.Event()
                    # not kept while idle: a sent reply may hold 200 MB of data
                    del batch
                if self._closed and not self._buffer:
                    break
        except CommClosedError as exc:
            self.close_reason = self.close_reason or str(exc)
        scope.cancel()

    def _drop_unencodable(self, batch: list) -> list:
        """The messages of ``batch`` that encode.  A request that does not
        fails in its caller (its reply is that error); any other message is
        dropped with a log line.  The connection goes on either way."""
        good = []
        for msg in batch:
            try:
                encode_batch([msg])
            except UnencodableMessage as exc:
                slot = self._pending.get(msg.get("rid"))
                if slot is not None and slot[1] is None:
                    slot[1] = reply_error(msg, TypeError(str(exc)))
                    slot[0].set()
                else:
                    logger.error("dropped a %r message to %s that cannot be sent: %s",
                                 msg.get("op"), self.peer_address, exc)
            else:
                good.append(msg)
        return good

    def _next_batch(self) -> list:
        """The queued messages up to BATCH_ITEMS items (a message counts its
        ``tasks`` too), so that a million-task graph goes out as many frames
        and the receiver decodes and handles one part at a time; the rest
        stays queued for the next round."""
        buffer, weight, n = self._buffer, 0, 0
        for msg in buffer:
            n += 1
            tasks = msg.get("tasks")
            weight += 1 + (len(tasks) if type(tasks) in (list, tuple) else 0)
            if weight >= BATCH_ITEMS:
                break
        if n == len(buffer):
            self._buffer = []
            return buffer
        self._buffer = buffer[n:]
        self._wake.set()
        return buffer[:n]

    async def _recv_loop(self):
        try:
            while True:
                # dispatched in a call of its own, so that no local of this
                # loop keeps the last batch (and the data it carried) alive
                # while waiting for the next
                msgs = await self.comm.recv()
                if self._recv_waiting is not None:
                    msgs = self._recv_waiting(msgs)
                self._dispatch(msgs)
                del msgs
        except CommClosedError as exc:
            self.close_reason = self.close_reason or str(exc)
        except ProtocolError as exc:
            # a malformed frame (recv) or a message that fits no schema
            # (_dispatch); any other exception is trioflow's own and goes up
            self.close_reason = str(exc)
            logger.warning("closing connection to %s: %s", self.peer_address, exc)

    def _dispatch(self, msgs: list) -> None:
        accepts, inproc = self.accepts, self._inproc
        for msg in msgs:
            if not self._any_op or msg.get("op") in _OWN_OPS:
                accepts.check(msg, inproc)
            elif type(msg.get("op")) is not str:
                raise BadMessage(f"a message without a valid op: {msg.get('op')!r:.40}")
            if msg.get("op") == "reply":
                slot = self._pending.get(msg.get("rid"))
                if slot is not None:
                    slot[1] = msg
                    slot[0].set()
                else:
                    undo = self._abandoned.pop(msg.get("rid"), None)
                    if undo is not None and "error" not in msg and not msg.get("cancelled"):
                        undo(msg.get("result"))
            elif self.handler is not None:
                self.handler(msg)


_REPLIES_ONLY = Accepts("this end", CONNECTION_OPS)
_OWN_OPS = frozenset(CONNECTION_OPS)


class _ReplyCallback:
    """Stands in for a request's Event: when the reply (or the close) sets it,
    hands the reply to a callback instead of waking a waiting task."""

    __slots__ = ("pending", "rid", "callback")

    def __init__(self, pending: dict, rid: int, callback):
        self.pending = pending
        self.rid = rid
        self.callback = callback

    def set(self) -> None:
        slot = self.pending.pop(self.rid, None)
        if slot is None:
            return
        try:
            self.callback(slot[1])
        except Exception:
            logger.exception("reply callback %r failed", self.callback)


def reply_ok(msg: dict, result=None) -> dict:
    return {"op": "reply", "rid": msg.get("rid"), "result": result}


def reply_error(msg: dict, exc: BaseException) -> dict:
    from trioflow.protocol.exceptions import error_payload
    return {"op": "reply", "rid": msg.get("rid"), **error_payload(exc)}


class ConnectionPool:
    """One Connection per peer address, opened on first use; background work
    runs in the owner's nursery."""

    def __init__(self, nursery: trio.Nursery, info: dict, token: str | None = None,
                 timeout: float = 5, security=None, role: str = "client"):
        self.nursery = nursery
        self.info = info
        self.token = token
        self.security = security
        self.role = role
        self.timeout = timeout
        self._conns: dict[str, Connection] = {}
        self._locks: dict[str, trio.Lock] = {}

    async def get(self, address: str) -> Connection:
        conn = self._conns.get(address)
        if conn is not None and not conn.closed:
            return conn
        async with self._locks.setdefault(address, trio.Lock()):
            conn = self._conns.get(address)
            if conn is not None and not conn.closed:
                return conn
            from trioflow.comm.core import connect
            comm = await connect(address, self.nursery, info=self.info, token=self.token,
                                 timeout=self.timeout, retry=False, security=self.security,
                                 role=self.role)
            conn = Connection(comm)
            self._conns[address] = conn
            self.nursery.start_soon(conn.run)
            return conn

    def close(self):
        for conn in self._conns.values():
            conn.close("pool closed")
        self._conns.clear()
