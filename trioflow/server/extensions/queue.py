"""The scheduler half of Queue (user object: ``trioflow/client/primitives/queue.py``):
a first-in first-out queue shared by every client and task that
names it, kept on the scheduler.

Items are pickled by the putter.  Futures inside an item keep their keys
alive while the item waits in the queue (holder ``queue-<name>``) and belong
to the getter's client once taken.

``close()`` empties the queue and releases the futures in it.

Every blocking call is one request that stays open on the scheduler (no
polling), with its timeout kept there too, and is cancel-safe:

* a ``get`` that times out, is cancelled, or whose client disconnects takes
  nothing — a batch get that already took some items puts them back in
  front, in order;
* an item whose reply reaches a caller that has given up is put back at the
  front of the queue by the caller's client;
* a ``put`` that times out put nothing.
"""
from __future__ import annotations

import math
from collections import deque

import trio

from trioflow.server.extensions.base import Deliveries, HeldKeys, SchedulerExtension


class _QueueState:
    __slots__ = ("items", "maxsize", "held", "changed", "busy")

    def __init__(self, maxsize: int, held: HeldKeys):
        self.items: deque = deque()  # of (payload, keys)
        self.maxsize = maxsize
        self.held = held
        self.changed: trio.Event | None = None  # set on the next put or take
        self.busy = 0  # requests waiting on this queue

    def full(self) -> bool:
        return bool(self.maxsize) and len(self.items) >= self.maxsize

    async def next_change(self):
        if self.changed is None:
            self.changed = trio.Event()
        await self.changed.wait()

    def notify(self):
        if self.changed is not None:
            self.changed.set()
            self.changed = None


class QueueExtension(SchedulerExtension):
    """Scheduler side: ops ``queue-put``, ``-get``, ``-qsize``, ``-put-back``.
    A queue that is empty, unbounded and unused is forgotten (a fresh one is
    the same)."""

    name = "queues"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.queues: dict[str, _QueueState] = {}
        self.deliveries = Deliveries(self)
        self.handlers = {
            "queue-put": self.put,
            "queue-get": self.get,
            "queue-qsize": self.qsize,
            "queue-delivered": self.delivered,
            "queue-put-back": self.put_back,
            "queue-release": self.release,
        }

    def peer_left(self, peer: str) -> None:
        # a reply it may or may not have read: counted as delivered (never twice)
        self.deliveries.peer_left(peer)

    def _queue(self, name, maxsize) -> _QueueState:
        state = self.queues.get(name)
        if state is None:
            state = self.queues[name] = _QueueState(int(maxsize or 0),
                                                    HeldKeys(self, f"queue-{name}"))
        return state

    # ---------------------------------------------------------------- put

    def put(self, peer, msg):
        name = msg["name"]
        state = self._queue(name, msg.get("maxsize"))
        item = (msg["payload"], tuple(msg.get("keys") or ()))
        if not state.full():
            self._append(state, item)
            return True
        timeout = msg.get("timeout")
        if timeout is not None and timeout <= 0:
            return False
        state.busy += 1
        return self._put_when_room(name, state, item, timeout)

    async def _put_when_room(self, name, state, item, timeout):
        room = False
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                while state.full():
                    await state.next_change()
                room = True
        finally:
            state.busy -= 1
            if not room:  # timed out or cancelled: put nothing
                self._forget_if_idle(name, state)
        if not room:
            return False
        self._append(state, item)
        return True

    def _append(self, state, item):
        state.held.hold(item[1])
        state.items.append(item)
        state.notify()

    def delivered(self, peer, msg):
        """One-way from a client that made its futures of a reply's keys."""
        self.deliveries.delivered(peer, msg.get("delivery"))

    def put_back(self, peer, msg):
        """One-way from a client whose caller gave up before reading a reply
        (or could not unpickle it): the items go back in front, in order."""
        state = self._queue(msg["name"], msg.get("maxsize"))
        items = [(payload, tuple(keys)) for payload, keys in msg["items"]]
        held = self.deliveries.take_back(peer, msg.get("delivery"))
        for _, keys in items:
            state.held.hold(keys)
        self.deliveries.held.release(held)
        state.items.extendleft(reversed(items))
        state.notify()

    # ---------------------------------------------------------------- get

    def get(self, peer, msg):
        name = msg["name"]
        state = self._queue(name, msg.get("maxsize"))
        batch = msg.get("batch", False)
        if batch is True:
            taken = list(state.items)
            state.items.clear()
            return self._deliver(peer, name, state, taken)
        wanted = 1 if batch is False else int(batch)
        if len(state.items) >= wanted:
            return self._deliver(peer, name, state, [state.items.popleft()
                                                     for _ in range(wanted)])
        timeout = msg.get("timeout")
        if timeout is not None and timeout <= 0:
            self._forget_if_idle(name, state)
            return None
        state.busy += 1
        return self._get_when_there(peer, name, state, wanted, timeout)

    async def _get_when_there(self, peer, name, state, wanted, timeout):
        taken: list = []
        done = False
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                while True:
                    # a batch takes what there is as it comes (room for putters
                    # of a bounded queue) and gives it all back if it fails
                    while state.items and len(taken) < wanted:
                        taken.append(state.items.popleft())
                    if len(taken) >= wanted:
                        break
                    if taken:
                        state.notify()
                    await state.next_change()
                done = True
        finally:
            state.busy -= 1
            if not done:  # timed out or cancelled: take nothing
                self._untake(state, taken)
                self._forget_if_idle(name, state)
        if not done:
            return None
        return self._deliver(peer, name, state, taken)

    def _untake(self, state, taken):
        if taken:
            state.items.extendleft(reversed(taken))
            state.notify()

    def _deliver(self, peer, name, state, taken):
        keys = [k for _, item_keys in taken for k in item_keys]
        delivery = self.deliveries.send(peer, keys, held_by=state.held)
        if taken:
            state.notify()
        self._forget_if_idle(name, state)
        return {"items": [payload for payload, _ in taken],
                "keys": [list(item_keys) for _, item_keys in taken],
                "delivery": delivery}

    def release(self, peer, msg):
        """One-way (``Queue.close()``): drop what the queue holds, futures too."""
        name = msg["name"]
        state = self.queues.get(name)
        if state is None:
            return
        dropped = [k for _, keys in state.items for k in keys]
        state.items.clear()
        state.held.release(dropped)
        state.notify()
        if not state.busy and self.queues.get(name) is state:
            del self.queues[name]

    def qsize(self, peer, msg) -> int:
        state = self.queues.get(msg["name"])
        return 0 if state is None else len(state.items)

    def _forget_if_idle(self, name, state):
        if (not state.items and not state.busy and not state.maxsize
                and self.queues.get(name) is state):
            del self.queues[name]
