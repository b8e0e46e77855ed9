"""What a scheduler or worker extension (the server half of a coordination
primitive) is given and must provide, and the key holds they share."""
from __future__ import annotations

import itertools
from collections import Counter

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


class HeldKeys:
    """Keys an extension keeps alive under one holder name, counted: the same
    future may sit in a queue twice, and taking one copy must not let go of
    the other.  The scheduler's own wants are a set, hence the count here."""

    def __init__(self, extension, holder: str):
        self.extension = extension
        self.holder = holder
        self.counts: Counter = Counter()

    def hold(self, keys) -> None:
        new = []
        for key in keys:
            if not self.counts[key]:
                new.append(key)
            self.counts[key] += 1
        self.extension.hold_keys(self.holder, new)

    def release(self, keys) -> None:
        self.extension.release_keys(self.holder, self._drop(keys))

    def _drop(self, keys) -> list:
        gone = []
        for key in keys:
            if key not in self.counts:
                continue
            n = self.counts[key] - 1
            if n > 0:
                self.counts[key] = n
            else:
                del self.counts[key]
                gone.append(key)
        return gone


class Deliveries:
    """Keys in replies on their way to clients, held (as holder
    ``<extension>-deliveries``) until the receiving client says it has made
    futures of its own for them, or is gone.

    Handing keys straight to the client's wants is not enough: the
    scheduler's wants are a set per client, so if that client already wanted
    a key and lets go of its older futures of it while the reply travels,
    the key would be forgotten before the new futures exist.  The client
    acknowledges (``<op>-delivered``) after making them, on the same
    connection as the ``want-keys`` they send, so the key is never unwanted.
    """

    def __init__(self, extension):
        self.held = HeldKeys(extension, f"{extension.name}-deliveries")
        self.pending: dict = {}  # peer -> {token: keys}
        self._tokens = itertools.count(1)

    def send(self, peer: str, keys, held_by: HeldKeys | None = None):
        """Hold ``keys`` for a reply to ``peer`` (moving them from
        ``held_by`` if given); returns the token the client acknowledges, or
        None when there are no keys."""
        keys = tuple(keys)
        if not keys:
            return None
        self.held.hold(keys)  # before held_by lets go: never unwanted in between
        if held_by is not None:
            held_by.release(keys)
        token = next(self._tokens)
        self.pending.setdefault(peer, {})[token] = keys
        return token

    def delivered(self, peer: str, token) -> None:
        """The client made its futures (or will never read the reply)."""
        self.held.release(self.take_back(peer, token))

    def take_back(self, peer: str, token) -> tuple:
        """Stop tracking a delivery; its keys stay held by this object, and
        the caller must ``self.held.release`` them once held elsewhere."""
        by_token = self.pending.get(peer)
        keys = by_token.pop(token, ()) if by_token else ()
        if by_token is not None and not by_token:
            del self.pending[peer]
        return keys

    def peer_left(self, peer: str) -> None:
        for keys in (self.pending.pop(peer, None) or {}).values():
            self.held.release(keys)
