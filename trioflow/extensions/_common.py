"""Pieces the coordination primitives (queue, variable, lock, event,
semaphore) share: counted key holds on the scheduler side, and the
client-side base that finds its client and travels by name."""
from __future__ import annotations

import itertools
import uuid
from collections import Counter

import trio

from trioflow.utils import parse_timedelta


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


def give(extension, peer: str, keys) -> None:
    """Make connected client ``peer`` want ``keys`` (it received futures of
    them); it releases them itself when those futures are gone.  If that
    client may already hold futures of the keys and drop them while the
    reply travels, use ``Deliveries`` instead."""
    keys = tuple(keys)
    if keys and peer in extension.scheduler.state.clients:
        extension.hold_keys(peer, keys)


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


def seconds(timeout) -> float | None:
    """A user's ``timeout=`` (number, "200ms", timedelta, None) in seconds."""
    if timeout is None:
        return None
    if hasattr(timeout, "total_seconds"):
        value = timeout.total_seconds()
    else:
        value = parse_timedelta(timeout)
    if value < 0:
        raise ValueError(f"timeout must not be negative, got {timeout!r}")
    return value


class ClientObject:
    """Base of the client-side primitives: a name shared by every client, and
    the client to talk through.

    An object unpickled on a worker (passed to a task) finds its client on
    first use with ``get_client()`` — inside a task that is the worker's
    client, so it is resolved in the task, not where arguments are loaded."""

    _prefix = "primitive"

    def __init__(self, name=None, client=None):
        self.name = name if name is not None else f"{self._prefix}-{uuid.uuid4().hex}"
        if client is None:
            from trioflow.task_context import get_client
            client = get_client()
        self._client = client

    @property
    def client(self):
        if self._client is None:
            from trioflow.task_context import get_client
            self._client = get_client()
        return self._client

    def _state_for_pickle(self) -> dict:
        return {}

    def __await__(self):
        """``await Queue(...)`` (and the other primitives) gives the object,
        as in dask, where awaiting creates it on the scheduler; trioflow
        creates it there on first use, so there is nothing to wait for."""
        return _itself(self).__await__()

    def __reduce__(self):
        return (_rebuild, (type(self), self.name, self._state_for_pickle()))

    def _rebuilt(self) -> None:
        """Called on a freshly unpickled object (``name`` and the pickled state set)."""

    def _ask(self, msg: dict, finish=None, undo=None):
        """Send request ``msg`` to the scheduler and return ``finish(result)``
        (the result itself without ``finish``): blocking for a blocking
        caller, as an awaitable for an asynchronous one.

        Cancel-safe: if the caller gives up (is cancelled) after the scheduler
        acted, ``undo(result)`` runs in the client's loop instead — whether
        the reply was still on its way or had already arrived."""
        client = self.client
        if client.status != "running" or not client.asynchronous:
            result = client._sync(_request, client, msg, undo)
            return result if finish is None else finish(result)
        host = client._host
        if host.mode == "asyncio":
            return _finish_after(_asyncio_cancel_safe(host, client, msg, undo), finish)
        # trio: the caller's cancellation reaches Connection.request, which
        # hands a reply that arrives anyway to undo
        return _finish_after(client._sync(_request, client, msg, undo), finish)

    def __repr__(self):
        return f"<{type(self).__name__}: {self.name}>"


async def _itself(obj):
    return obj


async def _request(client, msg, undo):
    return await client._core.request(msg, on_abandoned=undo)


async def _finish_after(awaitable, finish):
    result = await awaitable
    return result if finish is None else finish(result)


async def _asyncio_cancel_safe(host, client, msg, undo):
    """The asyncio face of ``_ask``.  Cancelling the portal's future would
    drop a result the trio side already has; instead the trio side is
    shielded from the future and told to give up, and undoes what it got."""
    import asyncio
    request = _Abandonable(client, msg, undo)
    outcome = asyncio.wrap_future(host.loop.portal.start_task_soon(request.run))
    try:
        return await asyncio.shield(outcome)
    except asyncio.CancelledError:
        host.loop.run_sync_soon(request.abandon)
        outcome.add_done_callback(_ignore_outcome)  # nobody will read it
        raise


def _ignore_outcome(future):
    if not future.cancelled():
        future.exception()


class _Abandonable:
    """One request run in the trio loop on behalf of an asyncio caller,
    which may abandon it at any moment (``abandon`` runs in the trio loop)."""

    def __init__(self, client, msg, undo):
        self.client, self.msg, self.undo = client, msg, undo
        self.scope: trio.CancelScope | None = None
        self.abandoned = False
        self.done = False
        self.result = None

    async def run(self):
        with trio.CancelScope() as self.scope:
            if self.abandoned:
                self.scope.cancel()
            self.result = await _request(self.client, self.msg, self.undo)
            self.done = True
            return self.result
        return None

    def abandon(self):
        self.abandoned = True
        if self.done:
            if self.undo is not None:
                self.undo(self.result)
        elif self.scope is not None:
            self.scope.cancel()


def _rebuild(cls, name, state):
    obj = cls.__new__(cls)
    obj.name = name
    obj._client = None
    obj.__dict__.update(state)
    obj._rebuilt()
    return obj
