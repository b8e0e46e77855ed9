"""Who holds the leases of one lock or semaphore, and who waits for one.

A pure object in the style of ``SchedulerState``: the trio shells
(``trioflow/server/extensions/semaphore.py``) feed it what happened — a
holder asks, gives back, gives up waiting, or disconnects — and it answers with
the leases it granted as a result.  It never blocks, reads no clock and
starts nothing.

A *lease* is any hashable naming one acquisition; the shells use ``(peer,
lease_id)`` tuples, where ``peer`` is the connection the request came on and
``lease_id`` is fresh per ``acquire`` call, so two tasks sharing one worker's
client are distinct holders while a disconnect still finds everything that
connection held (``drop_peer``).

Guarantees (checked by ``validate`` and by tests/property/test_leases.py):

* never more than ``max_leases`` holders;
* a lease is granted at most once while held (no double grant);
* waiters are served first come, first served, and nobody waits while a
  lease is free;
* leases are never taken away by time: only ``release`` and ``drop_peer``
  end them.
"""
from __future__ import annotations

from typing import Hashable, Iterable

Lease = Hashable


class LeaseTable:
    """The leases of one lock (``max_leases=1``) or semaphore."""

    __slots__ = ("max_leases", "holders", "waiters")

    def __init__(self, max_leases: int = 1):
        if not isinstance(max_leases, int) or isinstance(max_leases, bool) or max_leases < 1:
            raise ValueError(f"max_leases must be a positive integer, not {max_leases!r}")
        self.max_leases = max_leases
        #: leases currently held, in the order they were granted
        self.holders: dict[Lease, None] = {}
        #: leases asked for and not yet granted, first come first
        self.waiters: dict[Lease, None] = {}

    def __repr__(self):
        return (f"<LeaseTable {len(self.holders)}/{self.max_leases} held, "
                f"{len(self.waiters)} waiting>")

    # ---------------------------------------------------------------- queries

    @property
    def free(self) -> int:
        """Leases that could be granted right now."""
        return self.max_leases - len(self.holders)

    def is_held(self, lease: Lease) -> bool:
        return lease in self.holders

    def is_waiting(self, lease: Lease) -> bool:
        return lease in self.waiters

    def idle(self) -> bool:
        """Nobody holds or waits: the table is indistinguishable from a new one."""
        return not self.holders and not self.waiters

    # ---------------------------------------------------------------- events

    def acquire(self, lease: Lease) -> bool:
        """``lease`` asks for a lease.  True if granted at once; otherwise it
        waits in line and a later event's return value will name it.

        Asking again for a lease already held or waiting changes nothing."""
        if lease in self.holders:
            return True
        if lease in self.waiters:
            return False
        if not self.waiters and len(self.holders) < self.max_leases:
            self.holders[lease] = None
            return True
        self.waiters[lease] = None
        return False

    def release(self, lease: Lease) -> list[Lease]:
        """``lease`` is given back if held, or stops waiting if it waits (a
        timeout, a cancelled request).  Returns the leases granted because of
        it, in grant order.  Unknown leases are ignored."""
        if lease in self.holders:
            del self.holders[lease]
            return self._grant()
        self.waiters.pop(lease, None)
        # a waiter leaving frees nothing: while anyone waits every lease is held
        return []

    def drop_peer(self, peer) -> list[Lease]:
        """Everything leases ``(peer, ...)`` hold or wait for ends (the peer
        disconnected or died).  Returns the leases granted because of it."""
        return self.drop(lease for lease in list(self.holders) + list(self.waiters)
                         if _peer_of(lease) == peer)

    def drop(self, leases: Iterable[Lease]) -> list[Lease]:
        """``release`` each of ``leases`` at once; grants happen only after all
        are gone, so none of them is granted on the way out."""
        leases = list(leases)
        for lease in leases:
            self.waiters.pop(lease, None)
        freed = False
        for lease in leases:
            if lease in self.holders:
                del self.holders[lease]
                freed = True
        return self._grant() if freed else []

    # ---------------------------------------------------------------- internals

    def _grant(self) -> list[Lease]:
        granted = []
        while self.waiters and len(self.holders) < self.max_leases:
            lease = next(iter(self.waiters))
            del self.waiters[lease]
            self.holders[lease] = None
            granted.append(lease)
        return granted

    def validate(self) -> None:
        """Raise AssertionError if an invariant is broken."""
        assert len(self.holders) <= self.max_leases, "more holders than leases"
        assert not (self.holders.keys() & self.waiters.keys()), "a lease both held and waiting"
        if self.waiters:
            assert len(self.holders) == self.max_leases, "a waiter waits while a lease is free"


def _peer_of(lease: Lease):
    return lease[0] if isinstance(lease, tuple) and lease else lease
