"""Semaphore, the user object (scheduler half: ``trioflow/server/extensions/semaphore.py``,
which describes how leases are kept, waited for and given back)."""
from __future__ import annotations

import collections
import inspect
import uuid

from trioflow.client.primitives.base import ClientObject, seconds
from trioflow.errors import TrioflowError


class Semaphore(ClientObject):
    """A cluster-wide semaphore: at most ``max_leases`` holders at a time.

    ``acquire(timeout=None)`` waits for a lease and returns True, or False if
    ``timeout`` seconds passed first; ``release()`` gives back the oldest
    lease this object holds.  Use it as ``with sem:`` (blocking client, or a
    sync task) or ``async with sem:`` (asynchronous client, ``async def`` task).

    Objects with the same ``name`` share the semaphore; passed to a task, it
    arrives there by name, without the leases of the sender.  A lease
    belongs to the client connection and the ``acquire`` call that got it:
    if that client closes or dies, its leases are given back at once.

    ``register``, ``scheduler_rpc`` and ``loop`` are accepted for
    compatibility with distributed and have no effect.
    """

    _prefix = "semaphore"
    _op = "semaphore"

    def __init__(self, max_leases=1, name=None, register=True, scheduler_rpc=None, loop=None,
                 client=None):
        if not isinstance(max_leases, int) or isinstance(max_leases, bool) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive integer, not {max_leases!r}")
        super().__init__(name, client)
        self.max_leases = max_leases
        self._leases: collections.deque = collections.deque()
        self._closed = False

    def _state_for_pickle(self):
        return {"max_leases": self.max_leases}

    def _rebuilt(self):
        self._leases = collections.deque()
        self._closed = False

    def __repr__(self):
        return f"<{type(self).__name__}: {self.name}, max_leases={self.max_leases}>"

    # ---------------------------------------------------------------- API

    def acquire(self, timeout=None):
        """Wait for a lease; True once held, False if ``timeout`` seconds (a
        number or a string like "200ms") passed first.  The timeout runs on
        the scheduler; a timed-out or cancelled acquire holds nothing."""
        self._check_open()
        lease = uuid.uuid4().hex
        release = {"op": f"{self._op}-release", "name": self.name, "lease": lease}

        def finish(granted):
            if granted:
                self._leases.append(lease)
            return bool(granted)

        def undo(granted):
            # the caller gave up but the scheduler had granted: give it back
            if granted:
                self.port.send(release)

        return self.port.request({"op": f"{self._op}-acquire", "name": self.name,
                          "max_leases": self.max_leases, "lease": lease,
                          "timeout": seconds(timeout)}, finish, undo)

    def release(self):
        """Give back a lease this object acquired (the oldest one).  Raises
        RuntimeError if it holds none."""
        try:
            lease = self._leases.popleft()
        except IndexError:
            raise RuntimeError(f"{type(self).__name__} {self.name!r} released too often: "
                               f"this object holds no lease") from None
        return self.port.request({"op": f"{self._op}-release", "name": self.name, "lease": lease},
                         bool)

    def get_value(self):
        """How many leases are held now, cluster-wide."""
        return self.port.request({"op": f"{self._op}-value", "name": self.name})

    def close(self):
        """Give back this object's leases and forget the semaphore on the
        scheduler if nobody else uses it; the object cannot acquire again."""
        self._closed = True
        leases, self._leases = list(self._leases), collections.deque()
        return self.port.request({"op": f"{self._op}-close", "name": self.name, "leases": leases})

    def _check_open(self):
        if self._closed:
            raise TrioflowError(f"{type(self).__name__} {self.name!r} is closed")

    # ---------------------------------------------------------------- context manager

    def __enter__(self):
        if self.port.asynchronous:
            raise TypeError(f"this {type(self).__name__} uses an asynchronous client: "
                            f"use 'async with', not 'with'")
        self.acquire()
        return self

    def __exit__(self, *exc_info):
        self.release()

    async def __aenter__(self):
        result = self.acquire()
        if inspect.isawaitable(result):
            await result
        return self

    async def __aexit__(self, *exc_info):
        result = self.release()
        if inspect.isawaitable(result):
            await result
