"""The scheduler halves of Semaphore and Lock (user objects:
``trioflow/client/primitives/semaphore.py`` and ``lock.py``): at most ``max_leases`` holders of a named resource across the
cluster.

The scheduler keeps each semaphore's leases in a ``LeaseTable``
(trioflow/core/leases.py).  A lease belongs to the connection that asked for
it plus a lease id fresh per ``acquire``: two tasks sharing a worker's client
are distinct holders, and when a connection goes away (the client closed,
its process died, its worker died) every lease it held is given back at
once.  A Lock is a semaphore with one lease, in a namespace of its own:
``Lock("x")`` and ``Semaphore(name="x")`` are different things.  Leases are never taken away because time passed, so a slow holder
keeps its lease for as long as it is connected and no lease is granted twice.

Waiting is a request that stays open on the scheduler: no polling, one round
trip per call.  A wait that times out or is cancelled leaves nothing behind:
its place in line is removed, and a lease granted just as the caller gave up
is given back.
"""
from __future__ import annotations

import logging
import math

import trio

from trioflow.core.leases import LeaseTable
from trioflow.server.extensions.base import SchedulerExtension

logger = logging.getLogger("trioflow.extensions")


class SemaphoreExtension(SchedulerExtension):
    """Scheduler side: one ``LeaseTable`` per name; ops ``semaphore-*``."""

    name = "semaphores"
    #: op prefix; the lock extension reuses this class with its own
    op = "semaphore"
    #: keep a table once nobody holds or waits (its max_leases stays fixed
    #: until ``close``); locks drop theirs, a fresh one is identical
    keep_idle = True

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.tables: dict[str, LeaseTable] = {}
        self._granted: dict = {}  # (peer, lease id) waiting -> trio.Event set on grant
        self._warned: set = set()
        self.handlers = {
            f"{self.op}-acquire": self.acquire,
            f"{self.op}-release": self.release,
            f"{self.op}-value": self.value,
            f"{self.op}-close": self.close,
        }

    def _table(self, name: str, max_leases: int) -> LeaseTable:
        table = self.tables.get(name)
        if table is None:
            table = self.tables[name] = LeaseTable(max_leases)
        elif table.max_leases != max_leases and name not in self._warned:
            self._warned.add(name)
            logger.warning("%s %r is used with max_leases=%d and %d; keeping %d",
                           self.op, name, table.max_leases, max_leases, table.max_leases)
        return table

    def acquire(self, peer, msg):
        """Grant at once (answered inline, in message order) or queue the
        caller and return an awaitable that waits for the grant."""
        name = msg["name"]
        lease = (peer, msg["lease"])
        table = self._table(name, int(msg.get("max_leases") or 1))
        if table.acquire(lease):
            return True
        timeout = msg.get("timeout")
        if timeout is not None and timeout <= 0:
            self._give_back(name, table, [lease])
            return False
        # the place in line is taken now, in message order; the wait is a task
        granted = self._granted[lease] = trio.Event()
        return self._wait_for_grant(name, table, lease, granted, timeout)

    async def _wait_for_grant(self, name, table, lease, granted, timeout):
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await granted.wait()
        except BaseException:
            # cancelled (requester gone, or it gave up): no place in line, no lease
            self._give_back(name, table, [lease])
            raise
        finally:
            self._granted.pop(lease, None)
        if granted.is_set():
            return True
        self._give_back(name, table, [lease])
        return False

    def release(self, peer, msg):
        name = msg["name"]
        table = self.tables.get(name)
        lease = (peer, msg["lease"])
        if table is None or not table.is_held(lease):
            return False
        self._give_back(name, table, [lease])
        return True

    def value(self, peer, msg) -> int:
        """How many leases are held now."""
        table = self.tables.get(msg["name"])
        return 0 if table is None else len(table.holders)

    def close(self, peer, msg):
        """Give back the caller's listed leases and forget the semaphore if
        nobody else holds or waits for it."""
        name = msg["name"]
        table = self.tables.get(name)
        if table is None:
            return True
        self._give_back(name, table, [(peer, lease) for lease in msg.get("leases") or ()])
        if table.idle():
            self._forget(name)
        return True

    def peer_left(self, peer: str) -> None:
        for name, table in list(self.tables.items()):
            self._notify(table.drop_peer(peer))
            self._forget_if_idle(name, table)

    # ---------------------------------------------------------------- internals

    def _give_back(self, name, table, leases):
        self._notify(table.drop(leases))
        self._forget_if_idle(name, table)

    def _notify(self, granted):
        for lease in granted:
            event = self._granted.get(lease)
            if event is not None:
                event.set()

    def _forget_if_idle(self, name, table):
        if not self.keep_idle and table.idle() and self.tables.get(name) is table:
            self._forget(name)

    def _forget(self, name):
        del self.tables[name]
        self._warned.discard(name)


class LockExtension(SemaphoreExtension):
    """Scheduler side: ops ``lock-*``; a lock nobody holds or waits for is
    forgotten (a fresh one is the same)."""

    name = "locks"
    op = "lock"
    keep_idle = False
