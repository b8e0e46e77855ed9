"""Queue, the user object (scheduler half: ``trioflow/server/extensions/queue.py``,
which describes what is kept where and how each call stays cancel-safe)."""
from __future__ import annotations

from trioflow.client.primitives.base import ClientObject, seconds
from trioflow.client.primitives.values import pack, unpack
from trioflow.errors import TimeoutError


class Queue(ClientObject):
    """A distributed FIFO queue of futures and small values, shared by name
    between clients and tasks (a Queue passed to a task arrives there by
    name).

    ``put(value, timeout=None)`` waits while a bounded queue (``maxsize`` >
    0) is full and raises ``trioflow.TimeoutError`` if it still is after
    ``timeout`` seconds.  ``get(timeout=None, batch=False)`` waits for an
    item and raises ``trioflow.TimeoutError`` after ``timeout`` seconds;
    ``batch=True`` returns a list of everything in the queue now without
    waiting, ``batch=n`` a list of the next ``n`` items once there are that
    many.  Timeouts are kept on the scheduler, and a get that times out or
    is cancelled takes nothing.

    Everything goes through the scheduler: put futures (``client.scatter``,
    ``client.submit``) rather than large data.  The ``maxsize`` of a queue
    is the one of the first object to use it."""

    _prefix = "queue"

    def __init__(self, name=None, client=None, maxsize=0):
        given = maxsize or 0
        if isinstance(given, bool) or not hasattr(given, "__index__") or given < 0:
            raise ValueError(f"Queue(maxsize=) takes a count >= 0 (0: unbounded), "
                             f"not {maxsize!r}")
        super().__init__(name, client)
        self.maxsize = int(maxsize or 0)

    def _state_for_pickle(self):
        return {"maxsize": self.maxsize}

    def put(self, value, timeout=None, **kwargs):
        """Append ``value`` (a future, or any picklable object)."""
        payload, keys = pack(value)
        timeout = seconds(timeout)

        def finish(done):
            if not done:
                raise TimeoutError(f"queue {self.name!r} was still full after {timeout} s")

        return self.port.request({"op": "queue-put", "name": self.name, "maxsize": self.maxsize,
                          "payload": payload, "keys": keys, "timeout": timeout}, finish)

    def get(self, timeout=None, batch=False, **kwargs):
        """The next item (or a list of items with ``batch``)."""
        if not isinstance(batch, bool):
            batch = int(batch)
            if batch < 0:
                raise ValueError(f"batch must be True, False or a count >= 0, not {batch}")
        timeout = seconds(timeout)

        def finish(reply):
            if reply is None:
                wanted = "no item" if batch is False else f"fewer than {batch} items"
                raise TimeoutError(f"queue {self.name!r} had {wanted} after {timeout} s")
            try:
                values = [unpack(payload, self.port) for payload in reply["items"]]
            except BaseException:
                self._put_back(reply)
                raise
            if reply.get("delivery") is not None:
                # after the futures' want-keys, on the same connection
                self.port.send({"op": "queue-delivered",
                                        "delivery": reply["delivery"]})
            return values[0] if batch is False else values

        return self.port.request({"op": "queue-get", "name": self.name, "maxsize": self.maxsize,
                          "timeout": timeout, "batch": batch}, finish, self._put_back)

    def _put_back(self, reply):
        """Return taken items nobody will receive to the front of the queue
        (one-way; the scheduler still holds their futures for this reply)."""
        if reply and reply.get("items"):
            self.port.send({
                "op": "queue-put-back", "name": self.name, "maxsize": self.maxsize,
                "delivery": reply.get("delivery"),
                "items": [[payload, keys] for payload, keys
                          in zip(reply["items"], reply["keys"])]})

    def qsize(self, **kwargs):
        """How many items are in the queue now."""
        return self.port.request({"op": "queue-qsize", "name": self.name})

    def close(self):
        """Empty the queue and let go of the futures in it, as dask's
        ``Queue.close``; a later ``put`` starts it afresh."""
        self.port.send({"op": "queue-release", "name": self.name})
