"""The scheduler half of Event (user object: ``trioflow/client/primitives/event.py``):
a cluster-wide flag, ``asyncio.Event``'s API.

``set()`` wakes every waiter at once; ``clear()`` makes later waits block
again.  Waiting is a request that stays open on the scheduler until the flag
is set or the timeout (kept on the scheduler) passes: no polling.  A waiter
that times out or is cancelled leaves nothing registered.
"""
from __future__ import annotations

import math

import trio

from trioflow.server.extensions.base import SchedulerExtension


class _EventState:
    __slots__ = ("flag", "woken", "waiting")

    def __init__(self):
        self.flag = False
        self.woken = trio.Event()  # set by the next set(); replaced by clear()
        self.waiting = 0


class EventExtension(SchedulerExtension):
    """Scheduler side: ops ``event-set``, ``-clear``, ``-is-set``, ``-wait``.
    An event that is clear and has no waiters is forgotten (a fresh one is
    the same)."""

    name = "events"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.events: dict[str, _EventState] = {}
        self.handlers = {
            "event-set": self.set,
            "event-clear": self.clear,
            "event-is-set": self.is_set,
            "event-wait": self.wait,
        }

    def set(self, peer, msg):
        state = self.events.get(msg["name"])
        if state is None:
            state = self.events[msg["name"]] = _EventState()
        state.flag = True
        state.woken.set()
        return True

    def clear(self, peer, msg):
        name = msg["name"]
        state = self.events.get(name)
        if state is not None and state.flag:
            state.flag = False
            state.woken = trio.Event()
            self._forget_if_idle(name, state)
        return True

    def is_set(self, peer, msg):
        state = self.events.get(msg["name"])
        return state is not None and state.flag

    def wait(self, peer, msg):
        name = msg["name"]
        state = self.events.get(name)
        if state is not None and state.flag:
            return True
        timeout = msg.get("timeout")
        if timeout is not None and timeout <= 0:
            return False
        if state is None:
            state = self.events[name] = _EventState()
        state.waiting += 1
        return self._wait(name, state, state.woken, timeout)

    async def _wait(self, name, state, woken, timeout):
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                await woken.wait()
        finally:
            state.waiting -= 1
            self._forget_if_idle(name, state)
        # a set() while waiting counts even if a clear() followed before we ran
        return woken.is_set()

    def _forget_if_idle(self, name, state):
        if not state.flag and not state.waiting and self.events.get(name) is state:
            del self.events[name]
