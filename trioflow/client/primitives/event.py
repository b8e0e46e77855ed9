"""Event, the user object (scheduler half: ``trioflow/server/extensions/event.py``)."""
from __future__ import annotations

from trioflow.client.primitives.base import ClientObject, seconds


class Event(ClientObject):
    """A distributed event: a flag every client and task can set, clear and
    wait for.  Objects with the same ``name`` are the same event.

    ``wait(timeout=None)`` returns True once the flag is set (at once if it
    is), or False when ``timeout`` seconds passed first.  Every method blocks
    a blocking caller and returns an awaitable for an asynchronous client or
    inside ``async def`` tasks."""

    _prefix = "event"

    def __init__(self, name=None, client=None):
        super().__init__(name, client)

    def set(self):
        """Set the flag: every waiter wakes."""
        return self.port.request({"op": "event-set", "name": self.name})

    def clear(self):
        """Clear the flag: later waits block until the next ``set``."""
        return self.port.request({"op": "event-clear", "name": self.name})

    def is_set(self):
        """Whether the flag is set now."""
        return self.port.request({"op": "event-is-set", "name": self.name}, bool)

    def wait(self, timeout=None):
        """Wait until the flag is set; True then, False if ``timeout``
        seconds (kept on the scheduler) passed first."""
        return self.port.request({"op": "event-wait", "name": self.name,
                          "timeout": seconds(timeout)}, bool)
