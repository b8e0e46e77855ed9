"""The scheduler half of Variable (user object:
``trioflow/client/primitives/variable.py``): one shared value, read and replaced by any client or task.

The value is pickled by the setter and kept on the scheduler; futures inside
it keep their keys alive for as long as they are (part of) the value, under
the holder name ``variable-<name>``.  A reader gets its own futures of those
keys.  ``get`` on an unset variable waits (on the scheduler, no polling)
until one is set or the timeout passes.
"""
from __future__ import annotations

import math

import trio

from trioflow.server.extensions.base import Deliveries, HeldKeys, SchedulerExtension


class _VariableState:
    __slots__ = ("value", "changed", "waiting", "held")

    def __init__(self, held: HeldKeys):
        self.value: tuple | None = None  # (payload, keys)
        self.changed: trio.Event | None = None
        self.waiting = 0
        self.held = held


class VariableExtension(SchedulerExtension):
    """Scheduler side: ops ``variable-set``, ``-get``, ``-delete``."""

    name = "variables"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.variables: dict[str, _VariableState] = {}
        self.deliveries = Deliveries(self)
        self.handlers = {
            "variable-set": self.set,
            "variable-get": self.get,
            "variable-delivered": self.delivered,
            "variable-delete": self.delete,
        }

    def peer_left(self, peer: str) -> None:
        self.deliveries.peer_left(peer)

    def _variable(self, name) -> _VariableState:
        state = self.variables.get(name)
        if state is None:
            state = self.variables[name] = _VariableState(HeldKeys(self, f"variable-{name}"))
        return state

    def set(self, peer, msg):
        state = self._variable(msg["name"])
        keys = tuple(msg.get("keys") or ())
        old = state.value
        # the new value's keys are held before the old value's are let go
        state.held.hold(keys)
        state.value = (msg["payload"], keys)
        if old is not None:
            state.held.release(old[1])
        if state.changed is not None:
            state.changed.set()
            state.changed = None
        return True

    def get(self, peer, msg):
        name = msg["name"]
        state = self.variables.get(name)
        if state is not None and state.value is not None:
            return self._reply(peer, state)
        timeout = msg.get("timeout")
        if timeout is not None and timeout <= 0:
            return None
        state = self._variable(name)
        state.waiting += 1
        return self._wait(peer, name, state, timeout)

    async def _wait(self, peer, name, state, timeout):
        try:
            with trio.move_on_after(math.inf if timeout is None else timeout):
                while state.value is None:
                    if state.changed is None:
                        state.changed = trio.Event()
                    await state.changed.wait()
        finally:
            state.waiting -= 1
            self._forget_if_idle(name, state)
        if state.value is None:
            return None
        return self._reply(peer, state)

    def _reply(self, peer, state):
        payload, keys = state.value
        # held for the reader until it has made its futures (the value may
        # be replaced meanwhile)
        return {"payload": payload, "delivery": self.deliveries.send(peer, keys)}

    def delivered(self, peer, msg):
        """One-way from a client that made its futures of a reply's keys, or
        will never read the reply."""
        self.deliveries.delivered(peer, msg.get("delivery"))

    def delete(self, peer, msg):
        name = msg["name"]
        state = self.variables.get(name)
        if state is not None and state.value is not None:
            _, keys = state.value
            state.value = None
            state.held.release(keys)
            self._forget_if_idle(name, state)
        return True

    def _forget_if_idle(self, name, state):
        if state.value is None and not state.waiting and self.variables.get(name) is state:
            del self.variables[name]
