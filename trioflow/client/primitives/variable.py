"""Variable, the user object (scheduler half: ``trioflow/server/extensions/variable.py``)."""
from __future__ import annotations

from trioflow.client.primitives.base import ClientObject, seconds
from trioflow.client.primitives.values import pack, unpack
from trioflow.errors import TimeoutError


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
        return self.port.request({"op": "variable-set", "name": self.name, "payload": payload,
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
                return unpack(reply["payload"], self.port)
            finally:
                # after the futures' want-keys, on the same connection
                self._delivered(reply)

        return self.port.request({"op": "variable-get", "name": self.name, "timeout": timeout},
                         finish, self._delivered)

    def _delivered(self, reply):
        if reply and reply.get("delivery") is not None:
            self.port.send({"op": "variable-delivered",
                                    "delivery": reply["delivery"]})

    def delete(self):
        """Remove the value, for every client (futures in it are let go)."""
        return self.port.request({"op": "variable-delete", "name": self.name}, _none)


def _none(result):
    return None
