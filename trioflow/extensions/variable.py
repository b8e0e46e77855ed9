"""Variable: one shared value, read and replaced by any client or task.

The value is pickled by the setter and kept on the scheduler; futures inside
it keep their keys alive for as long as they are (part of) the value, under
the holder name ``variable-<name>``.  A reader gets its own futures of those
keys.  ``get`` on an unset variable waits (on the scheduler, no polling)
until one is set or the timeout passes.
"""
from __future__ import annotations

import math

import trio

from trioflow.errors import TimeoutError
from trioflow.extensions._common import ClientObject, Deliveries, HeldKeys, seconds
from trioflow.extensions.base import SchedulerExtension
from trioflow.extensions.values import pack, unpack


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


class Variable(ClientObject):
    """A distributed global variable: one value shared by every client and
    task that names it.

    ``set(value)`` replaces the value (futures in it stay alive while it is
    the value); ``get(timeout=None)`` returns it, waiting for a first
    ``set`` if there is none, and raises ``trioflow.TimeoutError`` if
    ``timeout`` seconds pass first; ``delete()`` removes it for everyone.
    Values go through the scheduler: keep them small, and share large data
    as a future (``client.scatter``).  ``maxsize`` is accepted for
    compatibility and unused."""

    _prefix = "variable"

    def __init__(self, name=None, client=None, maxsize=0):
        super().__init__(name, client)

    def set(self, value, **kwargs):
        """Replace the value (a future, or any picklable object)."""
        payload, keys = pack(value)
        return self._ask({"op": "variable-set", "name": self.name, "payload": payload,
                          "keys": keys}, _none)

    def get(self, timeout=None, **kwargs):
        """The current value; waits until there is one.  Raises
        ``trioflow.TimeoutError`` after ``timeout`` seconds (kept on the
        scheduler) without a value."""
        timeout = seconds(timeout)

        def finish(reply):
            if reply is None:
                raise TimeoutError(f"variable {self.name!r} had no value after {timeout} s")
            try:
                return unpack(reply["payload"], self.client)
            finally:
                # after the futures' want-keys, on the same connection
                self._delivered(reply)

        return self._ask({"op": "variable-get", "name": self.name, "timeout": timeout},
                         finish, self._delivered)

    def _delivered(self, reply):
        if reply and reply.get("delivery") is not None:
            self.client._core.send({"op": "variable-delivered",
                                    "delivery": reply["delivery"]})

    def delete(self):
        """Remove the value, for every client (futures in it are let go)."""
        return self._ask({"op": "variable-delete", "name": self.name}, _none)


def _none(result):
    return None
