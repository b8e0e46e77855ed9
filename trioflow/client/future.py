"""Futures: a handle on one key's result in one client.

All futures of one key in one client share a ``FutureState``.  Creating a
Future counts a reference to its key; when the last Future of the key is
garbage collected (or ``release()``d) the client tells the scheduler, which
forgets the key if no other client wants it.
"""
from __future__ import annotations

import trio

from trioflow.client.current import default_client
from trioflow.protocol.exceptions import unpack_exception, unpack_traceback
from trioflow.errors import CancelledError
from trioflow.utils import parse_timedelta

#: statuses a key does not leave on its own ("lost" is not one: its data is
#: being computed again after the workers holding it died)
FINAL = ("finished", "error", "cancelled")


class FutureState:
    """Status of one key as this client knows it.  Written only in the loop
    thread; read anywhere (attribute reads are atomic)."""

    __slots__ = ("key", "status", "type_name", "exception", "traceback", "text", "kind",
                 "workers", "_event", "_refreshed", "callbacks")

    def __init__(self, key):
        self.key = key
        self.status = "pending"
        self.type_name = None
        self.exception = self.traceback = None
        self.text = self.kind = ""
        self.workers: list | None = None
        self._event: trio.Event | None = None
        self._refreshed: trio.Event | None = None
        self.callbacks: list = []

    def done(self) -> bool:
        return self.status in FINAL

    def _wake(self):
        if self._event is not None:
            self._event.set()
        if self._refreshed is not None:
            self._refreshed.set()
            self._refreshed = None

    def finish(self, type_name, workers):
        self.status = "finished"
        self.type_name = type_name
        self.workers = list(workers) if workers else None
        self._wake()

    def err(self, exception, traceback, text, kind):
        self.status = "error"
        self.exception, self.traceback, self.text, self.kind = exception, traceback, text, kind
        self._wake()

    def cancel(self, reason: str = ""):
        self.status = "cancelled"
        self.text = reason
        self._wake()

    def reset(self, status: str = "pending"):
        """Not done any more: ``"pending"`` for a retry, ``"lost"`` while the
        scheduler computes data again that died with its workers."""
        self.status = status
        self.exception = self.traceback = None
        self.text = self.kind = ""
        self.workers = None
        if self._event is not None and self._event.is_set():
            self._event = None  # waiters still blocked on an unset one are woken later

    async def wait(self):
        """Wait in the loop thread until the key is finished, erred or cancelled.
        Loops: a retry may make the key pending again between the wake-up and
        this task running."""
        while not self.done():
            if self._event is None or self._event.is_set():
                self._event = trio.Event()
            await self._event.wait()

    async def refreshed(self):
        """Wait for the next news about this key."""
        if self._refreshed is None:
            self._refreshed = trio.Event()
        await self._refreshed.wait()

    def error_to_raise(self) -> BaseException:
        if self.status == "cancelled":
            why = f": {self.text}" if self.text else ""
            return CancelledError(f"future for key {self.key!r} was cancelled{why}")
        return unpack_exception(self.exception, self.traceback, self.text, self.kind)

    def traceback_object(self):
        return unpack_traceback(self.traceback)


#: dask.distributed Future attributes trioflow's has not, with what to do instead
DASK_ONLY = {
    "bind_client": "a trioflow Future belongs to the client that made it (unpickled in a "
                   "task, to that worker's client), so there is nothing to bind",
    "executor": "use future.client",
    "substitute": "a trioflow Future is not a node of a dask graph: pass it to submit(), "
                  "map() or compute() as an argument",
}


class Future:
    """A remotely running computation.  ``Future(key, client)`` rebuilds a
    future for a key another client created; ``inform=True`` tells the
    scheduler this client now wants it."""

    _trioflow_is_future = True

    def __init__(self, key, client=None, inform: bool = True, state=None):
        if client is None:
            client = default_client()
        self.key = key
        self.client = client
        self._state = client._core.acquire(key, inform)
        self._released = False

    def __getattr__(self, name):
        hint = DASK_ONLY.get(name)
        if hint is None:
            raise AttributeError(f"'Future' object has no attribute {name!r}")
        raise AttributeError(f"trioflow's Future has no {name!r}, which dask's has: {hint}")

    # ---------------------------------------------------------------- state

    @property
    def status(self) -> str:
        return self._state.status

    @property
    def type(self):
        return self._state.type_name

    def done(self) -> bool:
        return self._state.done()

    def cancelled(self) -> bool:
        return self._state.status == "cancelled"

    # ---------------------------------------------------------------- results

    def result(self, timeout=None):
        """The value; re-raises the task's exception with its remote traceback.
        Raises ``trioflow.TimeoutError`` after ``timeout`` (seconds, or a
        duration such as ``"2s"``)."""
        return self.client._sync(self.client._core.gather_one, self,
                                 parse_timedelta(timeout))

    def exception(self, timeout=None):
        """The exception the task raised, or None if it finished."""
        return self.client._sync(self.client._core.exception_of, self,
                                 parse_timedelta(timeout))

    def traceback(self, timeout=None):
        """The remote traceback object of the task's exception, or None."""
        return self.client._sync(self.client._core.traceback_of, self,
                                 parse_timedelta(timeout))

    def cancel(self, force: bool = False, **kwargs):
        return self.client.cancel([self], force=force, **kwargs)

    def retry(self, **kwargs):
        return self.client.retry([self], **kwargs)

    def add_done_callback(self, fn):
        """Call ``fn(future)`` once the future is done (at once if it already is).
        The callback runs in a worker thread, never blocking the event loop."""
        self.client._core.add_done_callback(self, fn)

    def release(self):
        if not self._released:
            self._released = True
            try:
                self.client._core.release(self.key)
            except Exception:
                pass

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass

    # ---------------------------------------------------------------- async face

    def __await__(self):
        return self.client._sync(self.client._core.gather_one, self, None).__await__()

    # ---------------------------------------------------------------- misc

    def __getstate__(self):
        return (self.key, self.client.scheduler_address)

    def __setstate__(self, state):
        key, address = state
        from trioflow.client.task_context import client_for_unpickled_future
        client = client_for_unpickled_future(address)
        self.key = key
        self.client = client
        self._state = client._core.acquire(key, True)
        self._released = False

    def __repr__(self):
        if self._state.status == "finished" and self._state.type_name:
            return (f"<Future: status: finished, type: {self._state.type_name}, "
                    f"key: {self.key}>")
        return f"<Future: status: {self._state.status}, key: {self.key}>"

    def _repr_html_(self):
        return repr(self).replace("<", "&lt;").replace(">", "&gt;")

    def __hash__(self):
        return hash(self.key)

    def __eq__(self, other):
        return isinstance(other, Future) and other.key == self.key and other.client is self.client
