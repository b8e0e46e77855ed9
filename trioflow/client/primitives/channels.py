"""Channel, the user object of channels (scheduler half:
``trioflow/server/extensions/channels.py``, which keeps each channel's log).

A ``Channel`` sends its appends in order through an outbox (one request in
flight per channel object; ``flush`` waits until the scheduler has every
earlier append) and follows the channel with long polls: "the entries from
index i on, waiting up to ``POLL`` seconds for some".  Nothing polls busily:
an idle iteration costs one request per ``POLL`` seconds.
"""
from __future__ import annotations

import threading
import weakref
from collections import deque

import trio

from trioflow.client.primitives.base import UsesClient
from trioflow.errors import CommClosedError
from trioflow.protocol.primitives import CHANNEL_READ_LIMIT as READ_LIMIT

#: seconds a read waits on the scheduler for new entries before answering empty
POLL = 5.0

_STOP = object()
_registry_lock = threading.Lock()
#: client -> name -> its Channel object while in use
_registry: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def channel(client, name, maxlen=None) -> "Channel":
    """``client.channel(name)``: this client's object for the channel ``name``
    (the same object each time while it is in use)."""
    if maxlen is not None and int(maxlen) < 1:
        raise ValueError(f"a channel's maxlen must be at least 1, got {maxlen!r}")
    with _registry_lock:
        channels = _registry.get(client)
        if channels is None:
            channels = _registry[client] = weakref.WeakValueDictionary()
        chan = channels.get(name)
        if chan is None:
            chan = channels[name] = Channel(client, name, maxlen)
        elif maxlen is not None and chan.maxlen is None:
            chan._learn({"start": 0, "keys": [], "window": 0, "maxlen": int(maxlen)}, [])
    return chan


class Channel(UsesClient):
    """A changing stream of futures shared by every client of a scheduler
    (``client.channel(name, maxlen=None)``).

    ``append(future)`` adds a future at the end, for everyone; the channel
    keeps its result alive (also after the appending client is gone) until
    ``maxlen`` newer entries have pushed it out.  ``flush()`` waits until the
    scheduler has every earlier append.  Iterating yields the futures already
    in the channel, oldest first, then each new one as any client appends it,
    until someone calls ``stop()``; an iteration that fell behind by more than
    ``maxlen`` entries continues at the oldest one still there.
    ``futures`` is a snapshot (a ``deque``) and ``len()`` its length.

    The first ``maxlen`` anyone gives a channel name stays its bound.
    In async code (an asynchronous client, an ``async def`` task) use
    ``async for``, ``await chan.flush()`` and ``await chan.stop()``.
    """

    def __init__(self, client, name, maxlen=None):
        self._client = client
        self.name = name
        self.maxlen = None if maxlen is None else int(maxlen)
        self._lock = threading.Lock()
        self._futures: deque = deque(maxlen=self.maxlen)  # what this object has seen
        self._count = 0  # absolute index one past the newest entry in _futures
        self._outbox: list = []
        self._queued = 0  # appends and stops ever queued
        self._acked = 0  # ... of which the scheduler has answered (loop thread)
        self._errors: list = []
        self._sending = False  # loop thread
        self._acked_changed: trio.Event | None = None  # loop thread

    def __repr__(self):
        return f"<Channel: {self.name!r}, {len(self._futures)} future(s) seen>"

    def __reduce__(self):
        return (_rebuild, (self.name, self.maxlen))

    # ------------------------------------------------------------ writing

    def append(self, future) -> None:
        """Add ``future`` at the end of the channel.  Returns at once; call
        ``flush()`` before leaving to be sure the scheduler has it."""
        if not getattr(type(future), "_trioflow_is_future", False):
            raise TypeError(f"a channel holds futures, not {type(future).__name__} objects: "
                            f"submit or scatter the value first")
        self._enqueue(future)

    def flush(self):
        """Wait until the scheduler has registered every append made before
        this call (and bring ``futures`` up to date).  Awaitable in async code."""
        return self.port.run(self._flush)

    def stop(self):
        """End every iteration over this channel, in every client, once it has
        yielded what was appended before the stop.  Waits until the scheduler
        has it (awaitable in async code).  The channel still keeps its futures,
        so ``futures`` goes on showing them."""
        self._enqueue(_STOP)
        return self.flush()

    def _enqueue(self, item) -> None:
        if not self.port.running:
            raise RuntimeError(f"{self.client!r} is not running: cannot write to channel "
                               f"{self.name!r}")
        # Queued from the loop, behind whatever this thread sent before (the
        # submission of the appended future): an outbox filled here could go
        # out ahead of it, naming keys the scheduler does not know yet.
        self.port.call_soon(self._queue_in_loop, item)

    def _queue_in_loop(self, item) -> None:
        with self._lock:
            self._outbox.append(item)
            self._queued += 1
        self._start_sending()

    def _start_sending(self) -> None:
        if self._sending or not self._outbox:
            return
        try:
            self.port.start_soon(self._send_outbox)
        except RuntimeError:  # the client closed in the meantime; flush() says so
            return
        self._sending = True

    async def _send_outbox(self) -> None:
        try:
            while True:
                with self._lock:
                    batch, self._outbox = self._outbox, []
                if not batch:
                    return
                stop = any(item is _STOP for item in batch)
                msg = {"op": "channel-append", "name": self.name, "maxlen": self.maxlen,
                       "keys": [item.key for item in batch if item is not _STOP], "stop": stop}
                try:
                    await self.port.ask(msg)
                except Exception as exc:
                    self._errors.append(exc)
                # the futures in ``batch`` are the channel's now: let ours go
                self._acked += len(batch)
                del batch
                self._notify_acked()
        finally:
            self._sending = False
            self._notify_acked()

    def _notify_acked(self) -> None:
        if self._acked_changed is not None:
            self._acked_changed.set()
            self._acked_changed = None

    async def _flush(self) -> None:
        with self._lock:
            target = self._queued
        self._start_sending()
        while self._acked < target:
            if not self.port.running:
                raise CommClosedError(f"{self.client!r} closed before the scheduler had "
                                      f"every append to channel {self.name!r}")
            if self._acked_changed is None:
                self._acked_changed = trio.Event()
            await self._acked_changed.wait()
        if self._errors:
            error = self._errors[0]
            self._errors.clear()
            raise error
        await self._refresh()

    # ------------------------------------------------------------ reading

    @property
    def futures(self) -> deque:
        """The channel's futures, oldest first (at most ``maxlen``), as a new
        deque.  Blocking code gets them fresh from the scheduler; async code,
        where a property cannot wait, gets what this object saw last (its
        appends after ``await flush()``, and what iterations read)."""
        if self.port.running and not self.port.asynchronous:
            self.port.run(self._refresh)
        with self._lock:
            return deque(self._futures, maxlen=self._futures.maxlen)

    def __len__(self) -> int:
        return len(self.futures)

    def __iter__(self):
        if self.port.asynchronous:
            raise TypeError(f"channel {self.name!r} belongs to an asynchronous client: "
                            f"use 'async for'")
        index = 0
        while True:
            start, futures, done = self.port.run(self._read, index, POLL)
            index = start + len(futures)
            yield from futures
            if done:
                return

    def __aiter__(self):
        return _AsyncIteration(self)

    async def _refresh(self) -> None:
        while True:
            start, futures, done = await self._read(self._count, 0)
            if len(futures) < READ_LIMIT:
                return

    async def _read(self, index: int, wait: float):
        """Entries from ``index`` on: ``(start, futures, done)``."""
        reply = await self.port.ask(
            {"op": "channel-read", "name": self.name, "index": index, "wait": wait,
             "maxlen": self.maxlen},
            undo=self._abandoned_read)
        futures = self._futures_of(reply["keys"])
        self._learn(reply, futures)
        return reply["start"], futures, reply["done"]

    def _futures_of(self, keys) -> list:
        return [self.port.future(key) for key in keys]

    def _abandoned_read(self, reply) -> None:
        # the scheduler made this client want the keys; futures made and dropped
        # at once take that back
        self._futures_of(reply["keys"])

    def _learn(self, reply: dict, futures: list) -> None:
        """Extend this object's view with a read, if it continues the view."""
        start = reply["start"]
        with self._lock:
            maxlen = reply.get("maxlen")
            if maxlen is not None and self._futures.maxlen != maxlen:
                self.maxlen = maxlen
                self._futures = deque(self._futures, maxlen=maxlen)
            if start > self._count and reply["window"] < start:
                return  # an iteration ahead of the view: entries in between are missing
            for future in futures[max(0, self._count - start):]:
                self._futures.append(future)
            self._count = max(self._count, start + len(futures))


class _AsyncIteration:
    def __init__(self, chan: Channel):
        self.channel = chan
        self.index = 0
        self.ready: deque = deque()
        self.done = False

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self.ready:
            if self.done:
                raise StopAsyncIteration
            start, futures, self.done = await self.channel.port.run(
                self.channel._read, self.index, POLL)
            self.index = start + len(futures)
            self.ready.extend(futures)
        return self.ready.popleft()


def _rebuild(name, maxlen):
    return Channel(None, name, maxlen)
