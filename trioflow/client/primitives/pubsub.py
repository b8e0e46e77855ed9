"""Pub and Sub, the user objects of publish-subscribe (server halves, and
who talks to whom: ``trioflow/server/extensions/pubsub.py``).

In a task a Pub or Sub belongs to the worker and works with the worker's
half directly; elsewhere it belongs to a client and talks through the
client's port.  ``Sub.get`` waits one way either way: a coroutine that waits
in the Sub's home loop (the worker's, or the client's) until a message is in
its buffer and takes it, run in the caller's face by that home (a blocking
caller takes a message already in the buffer without it).
"""
from __future__ import annotations

import uuid
import weakref
from collections import deque

import trio

from trioflow.client.primitives.base import find_client, seconds
from trioflow.errors import TimeoutError
from trioflow.protocol.serialize import deserialize
from trioflow.server.extensions.pubsub import PubSubWorkerExtension, pickle_message

#: seconds a client's Sub waits on the scheduler per request before asking again
POLL = 5.0


def _resolve(kind, worker, client):
    if worker is not None and client is not None:
        raise ValueError(f"{kind} takes worker= or client=, not both")
    if worker is None and client is None:
        from trioflow.server.context import current_task
        task = current_task()
        if task is not None:
            worker = task.worker
        else:
            client = find_client()
    return worker, client


def _extension(worker) -> PubSubWorkerExtension:
    try:
        return worker.extensions["pubsub"]
    except KeyError:
        raise RuntimeError(f"{worker!r} has no pubsub extension") from None


class Pub:
    """Publish messages on a topic: every ``Sub`` of ``name`` (on any worker
    or client) gets each message put after it subscribed.

    In a task (sync or ``async def``) the Pub belongs to the worker, and
    messages go straight to the subscribing workers; elsewhere it belongs to
    the default client (or ``client=``) and messages go through the
    scheduler.  Messages put while nobody subscribes are dropped.
    ``put`` never waits.
    """

    def __init__(self, name, worker=None, client=None):
        self.name = name
        self.worker, self.client = _resolve("Pub", worker, client)
        if self.worker is not None:
            ext = self._extension = _extension(self.worker)
            ext.soon(ext.add_publisher, name)
            self._finalizer = weakref.finalize(self, ext.soon, ext.remove_publisher, name)

    def __repr__(self):
        return f"<Pub: {self.name!r}>"

    @property
    def subscribers(self) -> dict:
        """The workers known to subscribe, ``{address: {}}`` (a worker's Pub;
        a client's Pub does not track them)."""
        if self.worker is None:
            return {}
        topic = self._extension.topics.get(self.name)
        if topic is None:
            return {}
        found = {address: {} for address in topic.remote}
        if topic.live:
            found[self.worker.address] = {}
        return found

    def put(self, msg) -> None:
        """Publish ``msg`` to every current subscriber.  Returns at once."""
        if self.worker is not None:
            ext = self._extension
            if ext.in_loop():
                ext.publish(self.name, msg)
                return
            # pickled here, in the task's thread, which sees the error if it cannot be
            serialized = pickle_message(self.name, msg) if ext.needs_pickle(self.name) else None
            ext.publish_threadsafe(self.name, msg, serialized)
        else:
            self.client.port.send({"op": "pubsub-msg", "name": self.name,
                                   "msg": pickle_message(self.name, msg)})


class Sub:
    """Subscribe to a topic: ``get(timeout=None)`` returns the next message
    (raising ``trioflow.TimeoutError`` after ``timeout`` seconds), and
    ``for msg in sub`` / ``async for msg in sub`` iterate for ever.

    In a task the Sub belongs to the worker; elsewhere to the default client
    (or ``client=``).  Made in blocking code (a client, a sync task), it
    returns once every publishing worker knows about it; in async code it
    registers at once and ``await sub`` waits for that.  ``get`` returns an
    awaitable in async code.
    """

    def __init__(self, name, worker=None, client=None):
        self.name = name
        self.worker, self.client = _resolve("Sub", worker, client)
        self._buffer: deque = deque()  # payloads, oldest first (home loop)
        self._arrived: trio.Event | None = None  # a worker's Sub: set by _deliver
        self._id = uuid.uuid4().hex
        if self.worker is not None:
            ext = self._extension = _extension(self.worker)
            if ext.in_loop():
                ext.add_subscriber(self)
            else:
                ext.run_for_task(ext.subscribe_confirmed, self)
            self._finalizer = weakref.finalize(self, ext.soon, ext.remove_subscriber, name)
        else:
            port = self.client.port
            port.send({"op": "pubsub-add-subscriber", "name": name, "sub": self._id})
            self._finalizer = weakref.finalize(
                self, port.send, {"op": "pubsub-remove-subscriber", "name": name,
                                  "sub": self._id})
            if not port.asynchronous:
                port.run(self._confirm)

    def __repr__(self):
        return f"<Sub: {self.name!r}>"

    def __await__(self):
        return self._ready().__await__()

    async def _ready(self):
        if self.worker is not None:
            await self._extension.confirm(self.name)
        else:
            await self.client.port.run(self._confirm)
        return self

    async def _confirm(self):
        await self.client.port.ask({"op": "pubsub-confirm", "name": self.name})

    # ------------------------------------------------------------ receiving

    def _deliver(self, payload) -> None:
        """A message arrived (a worker's Sub, in the worker's loop)."""
        self._buffer.append(payload)
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None

    def get(self, timeout=None):
        """The next message; ``trioflow.TimeoutError`` if none comes within
        ``timeout`` seconds (a number or a string like ``"200ms"``)."""
        timeout = seconds(timeout)
        if self._buffer and self._blocking_caller():
            # a message is here: a blocking caller takes it without a trip to
            # the home loop (deque.popleft is atomic; a racing getter may win)
            try:
                return deserialize(self._buffer.popleft())
            except IndexError:
                pass
        if self.worker is not None:
            return self._extension.run_for_task(self._take, timeout)
        # taken in the loop; one an asyncio caller gave up on goes back in front
        return self.client.port.run(self._take, timeout, undo=self._buffer.appendleft,
                                    finish=deserialize)

    next = get

    def _blocking_caller(self) -> bool:
        if self.worker is not None:
            return not self._extension.in_loop()
        return not self.client.port.asynchronous

    async def _take(self, timeout):
        """In the home loop: the next payload (deserialized for a worker's
        Sub), once there is one; TimeoutError after ``timeout`` seconds."""
        with trio.move_on_after(float("inf") if timeout is None else timeout):
            while not self._buffer:
                await self._wait_for_messages()
            payload = self._buffer.popleft()
            return deserialize(payload) if self.worker is not None else payload
        raise TimeoutError(f"no message on topic {self.name!r} within {timeout} s")

    async def _wait_for_messages(self):
        if self.worker is not None:
            if self._arrived is None:
                self._arrived = trio.Event()
            await self._arrived.wait()
            return
        # a long poll; messages whose reply arrives after we gave up are kept
        messages = await self.client.port.ask(
            {"op": "pubsub-get", "name": self.name, "sub": self._id, "wait": POLL},
            undo=self._buffer.extend)
        self._buffer.extend(messages)

    def __iter__(self):
        return self

    def __next__(self):
        return self.get()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.get()
