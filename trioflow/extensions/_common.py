"""Pieces the coordination primitives (queue, variable, lock, event,
semaphore) share: counted key holds on the scheduler side, and the
client-side base that finds its client and travels by name."""
from __future__ import annotations

import uuid
from collections import Counter

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

    def hand_over(self, peer: str, keys) -> None:
        """The keys now belong to ``peer`` (a client that received them): it
        wants them before this holder lets go, so they are never unwanted."""
        keys = list(keys)
        give(self.extension, peer, keys)
        self.release(keys)

    def _drop(self, keys) -> list:
        gone = []
        for key in keys:
            n = self.counts[key] - 1
            if n > 0:
                self.counts[key] = n
            else:
                del self.counts[key]
                gone.append(key)
        return gone


def give(extension, peer: str, keys) -> None:
    """Make connected client ``peer`` want ``keys`` (it received futures of
    them); it releases them itself when those futures are gone."""
    keys = tuple(keys)
    if keys and peer in extension.scheduler.state.clients:
        extension.hold_keys(peer, keys)


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

    def __reduce__(self):
        return (_rebuild, (type(self), self.name, self._state_for_pickle()))

    def _rebuilt(self) -> None:
        """Called on a freshly unpickled object (``name`` and the pickled state set)."""

    def _request(self, msg: dict, on_abandoned=None):
        """Send ``msg`` to the scheduler in the client's loop (an awaitable)."""
        return self.client._core.request(msg, on_abandoned=on_abandoned)

    def _call(self, async_fn, *args):
        """Run ``async_fn(*args)`` through the client: blocks a blocking
        caller, returns an awaitable for an asynchronous one."""
        return self.client._sync(async_fn, *args)

    def __repr__(self):
        return f"<{type(self).__name__}: {self.name}>"


def _rebuild(cls, name, state):
    obj = cls.__new__(cls)
    obj.name = name
    obj._client = None
    obj.__dict__.update(state)
    obj._rebuilt()
    return obj
