"""Lock: a cluster-wide mutual-exclusion lock, ``threading.Lock``'s API.

A lock is a semaphore with one lease (see ``trioflow/server/extensions/semaphore.py`` for how
leases are kept, waited for and given back), in a namespace of its own: ``Lock("x")``
and ``Semaphore(name="x")`` are different things.  A lock is held by the
``acquire`` call that got it, through its client's connection: when that
client closes or its process dies, the lock is free again at once.
"""
from __future__ import annotations

from trioflow.client.primitives.semaphore import Semaphore


class Lock(Semaphore):
    """A distributed lock.  ``Lock(name)`` objects with the same name, in any
    client or task, are the same lock; without a name a random one is made
    (pass the object to tasks to share it).

    ``with lock:`` in blocking code and sync tasks, ``async with lock:``
    with an asynchronous client and in ``async def`` tasks.  The lock is not
    reentrant, and ``release()`` must be called on the object that acquired
    it (an object passed to a task arrives without its holder's lease).
    """

    _prefix = "lock"
    _op = "lock"

    def __init__(self, name=None, client=None, register=True, scheduler_rpc=None, loop=None):
        super().__init__(max_leases=1, name=name, client=client)

    def _state_for_pickle(self):
        return {}

    def _rebuilt(self):
        super()._rebuilt()
        self.max_leases = 1

    def __repr__(self):
        return f"<Lock: {self.name}>"

    def acquire(self, blocking=True, timeout=None):
        """Take the lock; True once held.  ``timeout`` (seconds, or a string
        like "200ms") waits at most that long on the scheduler and returns
        False then; ``blocking=False`` only tries once.  A timed-out or
        cancelled acquire leaves the lock as it was."""
        if not blocking:
            if timeout is not None:
                raise ValueError("can't specify a timeout for a non-blocking call")
            timeout = 0
        return super().acquire(timeout=timeout)

    def locked(self):
        """Whether anyone holds the lock now."""
        return self.port.request({"op": "lock-value", "name": self.name}, bool)
