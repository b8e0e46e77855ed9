"""Stateful tests of ``LeaseTable`` (trioflow/core/leases.py), the pure
ownership logic under Lock and Semaphore.

The machine plays a few peers (connections), each making acquire calls with
fresh lease ids, against one table.  It mirrors what the trio shell does:

* ``acquire`` either is granted at once or joins the line;
* a waiting call may time out or be cancelled (``release`` of a waiting
  lease) — possibly just as a grant reached it, in which case the shell gives
  the granted lease back;
* a holder releases;
* a peer dies (``drop_peer``) while holding and waiting, possibly several
  leases at once.

Beside ``validate()`` it keeps its own record of who was granted what, from
the return values alone, and checks after every step that:

* never more than ``max_leases`` holders;
* no lease is granted twice while held, and only waiting leases are granted;
* every lease of a dead peer is gone, and the dead peer is never granted;
* nobody waits while a lease is free;
* waiters are granted in the order they asked.
"""
from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from trioflow.core.leases import LeaseTable

pytestmark = pytest.mark.timeout(300)

PEERS = ("client-a", "client-b", "worker-client-c", "client-d")


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.ids = itertools.count()
        self.table: LeaseTable | None = None
        self.held: set = set()  # leases the model knows are held
        self.waiting: list = []  # leases the model knows wait, in the order they asked
        self.dead: set = set()  # peers that died (a new connection gets a new id)
        self.ever_granted: set = set()

    @initialize(max_leases=st.integers(min_value=1, max_value=4))
    def make_table(self, max_leases):
        self.table = LeaseTable(max_leases)

    # ---------------------------------------------------------------- helpers

    def _granted(self, leases):
        """Record leases the table says it just granted."""
        assert len(leases) == len(set(leases)), f"one lease granted twice at once: {leases}"
        for lease in leases:
            assert lease not in self.held, f"double grant of {lease}"
            assert lease in self.waiting, f"{lease} granted without waiting for it"
            assert lease[0] not in self.dead, f"dead peer {lease[0]} was granted {lease}"
            assert lease not in self.ever_granted, f"{lease} granted a second time"
        # waiters are served first come, first served
        assert list(leases) == self.waiting[:len(leases)], (leases, self.waiting)
        for lease in leases:
            self.waiting.remove(lease)
            self.held.add(lease)
            self.ever_granted.add(lease)

    def _live_peers(self):
        return [p for p in PEERS if p not in self.dead]

    # ---------------------------------------------------------------- rules

    @rule(data=st.data())
    def acquire(self, data):
        peers = self._live_peers()
        if not peers:
            return
        peer = data.draw(st.sampled_from(peers), label="peer")
        lease = (peer, next(self.ids))
        free_before = self.table.max_leases - len(self.held)
        line_before = len(self.waiting)
        if self.table.acquire(lease):
            assert free_before > 0 and line_before == 0, "granted past the line or the limit"
            self.held.add(lease)
            self.ever_granted.add(lease)
        else:
            assert free_before == 0 or line_before > 0, "made to wait while a lease was free"
            self.waiting.append(lease)

    @rule(data=st.data())
    def acquire_nonblocking(self, data):
        """acquire(blocking=False) / timeout=0: try, and leave the line at once."""
        peers = self._live_peers()
        if not peers:
            return
        lease = (data.draw(st.sampled_from(peers), label="peer"), next(self.ids))
        if self.table.acquire(lease):
            self.held.add(lease)
            self.ever_granted.add(lease)
        else:
            self._granted(self.table.release(lease))
            assert not self.table.is_waiting(lease)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data):
        lease = data.draw(st.sampled_from(sorted(self.held)), label="lease")
        self.held.discard(lease)
        self._granted(self.table.release(lease))

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def wait_times_out(self, data):
        """A waiter's timeout passes (or its request is cancelled)."""
        lease = data.draw(st.sampled_from(self.waiting), label="lease")
        self.waiting.remove(lease)
        assert self.table.release(lease) == [], "a waiter leaving granted something"
        assert not self.table.is_waiting(lease) and not self.table.is_held(lease)

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def granted_as_caller_gave_up(self, data):
        """The grant and the caller's timeout crossed: the shell gives the
        lease straight back (the on_abandoned path)."""
        lease = data.draw(st.sampled_from(sorted(self.held)), label="lease")
        self.held.discard(lease)
        self._granted(self.table.release(lease))

    @rule(data=st.data())
    def peer_dies(self, data):
        peers = self._live_peers()
        if not peers:
            return
        peer = data.draw(st.sampled_from(peers), label="peer")
        self.dead.add(peer)
        self.held = {lease for lease in self.held if lease[0] != peer}
        self.waiting = [lease for lease in self.waiting if lease[0] != peer]
        self._granted(self.table.drop_peer(peer))

    @rule(data=st.data())
    def release_unknown(self, data):
        """A late or duplicate release (already given back, or a dead peer's)
        changes nothing."""
        lease = (data.draw(st.sampled_from(PEERS), label="peer"), -1)
        assert self.table.release(lease) == []

    @rule()
    def acquire_same_lease_again(self):
        """A repeated request for a lease changes nothing."""
        for lease in sorted(self.held)[:1] + self.waiting[:1]:
            was_held = lease in self.held
            assert self.table.acquire(lease) is was_held

    # ---------------------------------------------------------------- invariants

    @invariant()
    def table_matches_model(self):
        if self.table is None:
            return
        self.table.validate()
        assert set(self.table.holders) == self.held
        assert list(self.table.waiters) == self.waiting

    @invariant()
    def never_more_holders_than_leases(self):
        if self.table is not None:
            assert len(self.held) <= self.table.max_leases

    @invariant()
    def nobody_waits_while_a_lease_is_free(self):
        if self.table is not None and self.waiting:
            assert len(self.held) == self.table.max_leases

    @invariant()
    def dead_peers_hold_nothing(self):
        if self.table is None:
            return
        for lease in list(self.table.holders) + list(self.table.waiters):
            assert lease[0] not in self.dead, f"dead peer {lease[0]} still has {lease}"

    def teardown(self):
        """Everyone dies: every lease comes back and the table is idle."""
        if self.table is None:
            return
        for peer in self._live_peers():
            self.dead.add(peer)
            self.held = {lease for lease in self.held if lease[0] != peer}
            self.waiting = [lease for lease in self.waiting if lease[0] != peer]
            self._granted(self.table.drop_peer(peer))
        assert self.table.idle()


LeaseMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=60,
                                          deadline=None)
test_lease_table = LeaseMachine.TestCase


def test_grants_in_order_of_asking():
    table = LeaseTable(1)
    assert table.acquire(("a", 1))
    assert not table.acquire(("b", 1))
    assert not table.acquire(("c", 1))
    assert table.release(("a", 1)) == [("b", 1)]
    assert table.release(("b", 1)) == [("c", 1)]
    assert table.release(("c", 1)) == []
    assert table.idle()


def test_dropping_a_peer_returns_all_its_leases_before_granting():
    table = LeaseTable(2)
    assert table.acquire(("a", 1)) and table.acquire(("a", 2))
    assert not table.acquire(("a", 3))
    assert not table.acquire(("b", 1))
    # a's waiting lease is not granted on the way out; b gets one of the two
    assert table.drop_peer("a") == [("b", 1)]
    assert set(table.holders) == {("b", 1)} and not table.waiters


def test_two_tasks_of_one_client_are_distinct_holders():
    table = LeaseTable(1)
    assert table.acquire(("worker-client", "task-1"))
    assert not table.acquire(("worker-client", "task-2"))
    assert table.release(("worker-client", "task-1")) == [("worker-client", "task-2")]


def test_max_leases_must_be_positive():
    with pytest.raises(ValueError):
        LeaseTable(0)
    with pytest.raises(ValueError):
        LeaseTable(True)
