"""What a scheduler or worker extension is given and must provide."""
from __future__ import annotations

from trioflow.core import events as ev


class SchedulerExtension:
    """Base of scheduler-side extensions.

    ``handlers`` maps an op name to a bound method ``handler(peer, msg)``;
    ``peer`` is the requesting client's id (or a worker's address).  A
    handler may be sync or async; what it returns is the reply's result and
    what it raises is re-raised in the caller.  Handlers are called in the
    order the peer's messages arrived, so a sync handler (or the sync part
    of a handler that returns an awaitable) sees them in the order sent; an
    awaitable a handler returns runs in a task of its own inside the
    requesting connection's nursery, so a blocking handler (a queue get, a
    lock acquire) is cancelled when the requester disconnects: it must leave
    nothing behind when cancelled.  A message without a ``rid`` (sent with
    ``Connection.send``) is one-way: it gets no reply.

    ``peer_left(peer)`` is called when a client or worker disconnects.
    Futures an extension holds stay alive through ``hold_keys``/``release_keys``
    under a holder name of its own (a pseudo-client of the scheduler).
    """

    name = ""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.handlers: dict = {}

    def peer_left(self, peer: str) -> None:
        pass

    def worker_joined(self, address: str) -> None:
        """A worker connected.  Messages sent now on its connection
        (``self.scheduler.worker_comms[address].send``) reach it before any task
        is assigned to it (plugins, uploaded files)."""

    # ---------------------------------------------------------------- keeping keys alive

    def hold_keys(self, holder: str, keys) -> None:
        """Keep ``keys`` in memory on behalf of ``holder`` (any name)."""
        keys = tuple(keys)
        if not keys:
            return
        if holder not in self.scheduler.state.clients:
            self.scheduler.stimulus(ev.ClientConnected(holder, f"{self.name}-holder"))
        self.scheduler.stimulus(ev.KeysWanted(holder, keys, f"{self.name}-hold"))

    def release_keys(self, holder: str, keys) -> None:
        keys = tuple(keys)
        if keys:
            self.scheduler.stimulus(ev.KeysReleased(holder, keys, f"{self.name}-release"))

    def hand_over(self, holder: str, client: str, keys) -> None:
        """Move keys held by ``holder`` to ``client`` (which then releases them
        itself when its futures are gone).  Wants first, so nothing is freed
        in between."""
        keys = tuple(keys)
        if keys and client in self.scheduler.state.clients:
            self.scheduler.stimulus(ev.KeysWanted(client, keys, f"{self.name}-hand-over"))
        self.release_keys(holder, keys)


class WorkerExtension:
    """Base of worker-side extensions: ``handlers`` maps an op to a bound
    method ``handler(msg, inproc)`` answering requests sent straight to the
    worker (``inproc`` says whether values may be passed unpickled).  The
    same handlers receive the extension's messages from the scheduler, in
    the order they come (a sync handler finishes before any later task)."""

    name = ""

    def __init__(self, worker):
        self.worker = worker
        self.handlers: dict = {}

    async def close(self) -> None:
        pass
