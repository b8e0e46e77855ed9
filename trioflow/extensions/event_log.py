"""Structured event logs: ``log_event(topic, msg)`` records ``(timestamp,
msg)`` under a topic on the scheduler (the newest ``EVENTS_LOG_LENGTH`` per
topic), ``get_events`` reads them back, and subscribed clients receive each
new event as it is logged.

Two ways to follow a topic from a client:

- ``client.subscribe_topic(topic, handler)`` (dask's API): ``handler(event)``
  is called for each event, in order.  A coroutine function is awaited in
  the client's event loop; a plain function runs in a thread for a blocking
  client (so it may block or use the client) and in the loop for an
  asynchronous one.  For an asyncio client both run in the caller's loop.
- ``async with client.events(topic) as stream: async for event in stream``
  (``with`` and ``for`` with a blocking client): the subscription is active
  once the block is entered and ends when it is left.

Messages must be msgpack-serializable (numbers, strings, bytes, lists,
dicts): they are stored on the scheduler as they are, as in dask.
"""
from __future__ import annotations

import inspect
import logging
import math
import queue
import threading
import time
from collections import defaultdict, deque
from functools import partial

import msgpack
import trio

from trioflow.errors import TimeoutError
from trioflow.extensions.base import SchedulerExtension

logger = logging.getLogger("trioflow.events")

#: events kept per topic (dask's ``distributed.scheduler.events-log-length``)
EVENTS_LOG_LENGTH = 100_000


class EventLogExtension(SchedulerExtension):
    name = "event-log"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.events: dict = defaultdict(lambda: deque(maxlen=EVENTS_LOG_LENGTH))
        self.subscribers: dict = defaultdict(set)  # topic -> client ids
        self.handlers = {
            "log-event": self._log_event,
            "get-events": self._get_events,
            "subscribe-topic": self._subscribe,
            "unsubscribe-topic": self._unsubscribe,
        }

    def log_event(self, topic, msg) -> None:
        """Record ``msg`` under ``topic`` (or under each of a list of topics)
        and send it to the topic's subscribers."""
        topics = [topic] if isinstance(topic, str) or not isinstance(topic, (list, tuple)) \
            else list(topic)
        event = (time.time(), msg)
        for one in topics:
            self.events[one].append(event)
            for client in self.subscribers.get(one, ()):
                conn = self.scheduler.clients.get(client)
                if conn is not None:
                    conn.send({"op": "topic-event", "topic": one, "event": event})

    def _log_event(self, peer, msg):
        self.log_event(msg["topic"], msg.get("msg"))

    def _get_events(self, peer, msg):
        topic = msg.get("topic")
        if topic is not None:
            return list(self.events.get(topic, ()))
        return {one: list(events) for one, events in self.events.items()}

    def _subscribe(self, peer, msg):
        self.subscribers[msg["topic"]].add(peer)

    def _unsubscribe(self, peer, msg):
        subscribers = self.subscribers.get(msg["topic"])
        if subscribers is not None:
            subscribers.discard(peer)
            if not subscribers:
                del self.subscribers[msg["topic"]]

    def peer_left(self, peer: str) -> None:
        for topic in [t for t, clients in self.subscribers.items() if peer in clients]:
            self._unsubscribe(peer, {"topic": topic})


# ----------------------------------------------------------------------- client side

def _check_msgpack(value, what: str):
    try:
        msgpack.packb(value, use_bin_type=True)
    except Exception as exc:
        raise TypeError(f"{what} must be msgpack serializable (numbers, strings, bytes, lists, "
                        f"dicts); got {type(value).__name__}: {exc}") from None


class _Topics:
    """One client's local subscribers, by topic.  Changed from any thread
    under ``lock``; events are delivered in the client's loop."""

    def __init__(self, client):
        self.client = client
        self.lock = threading.Lock()
        self.handlers: dict = {}  # topic -> _HandlerSubscription
        self.streams: dict = defaultdict(list)  # topic -> [EventStream]

    def on_event(self, msg):
        topic = msg["topic"]
        event = tuple(msg["event"])
        with self.lock:
            handler = self.handlers.get(topic)
            streams = list(self.streams.get(topic, ()))
        if handler is not None:
            handler.deliver(event)
        for stream in streams:
            stream._deliver(event)

    def wanted(self, topic) -> bool:
        with self.lock:
            return topic in self.handlers or bool(self.streams.get(topic))


_topics_lock = threading.Lock()


def _topics(client) -> _Topics:
    topics = client.__dict__.get("_event_topics")
    if topics is None:
        with _topics_lock:
            topics = client.__dict__.get("_event_topics")
            if topics is None:
                topics = client._event_topics = _Topics(client)
                client._core.handlers["topic-event"] = topics.on_event
    return topics


class _HandlerSubscription:
    """Calls one handler for each event of a topic, in order."""

    def __init__(self, client, topic, handler):
        self.client = client
        self.topic = topic
        self.handler = handler
        self.mode = client._host.mode
        self.asyncio_loop = None
        if self.mode == "asyncio":
            import asyncio
            try:
                self.asyncio_loop = asyncio.get_running_loop()
            except RuntimeError:
                pass
        self._send, self._receive = trio.open_memory_channel(math.inf)

    def start(self):  # loop thread
        self.client._core.nursery.start_soon(self._run)

    def deliver(self, event):  # loop thread
        try:
            self._send.send_nowait(event)
        except trio.ClosedResourceError:
            pass

    def close(self):  # loop thread
        self._send.close()

    async def _run(self):
        async with self._receive:
            async for event in self._receive:
                try:
                    await self._call(event)
                except Exception:
                    logger.exception("event handler %r for topic %r raised", self.handler,
                                     self.topic)

    async def _call(self, event):
        handler = self.handler
        if self.asyncio_loop is not None:
            self.asyncio_loop.call_soon_threadsafe(_call_in_asyncio, handler, event, self.topic)
            return
        if inspect.iscoroutinefunction(handler):
            await handler(event)
            return
        if self.mode == "blocking":
            result = await trio.to_thread.run_sync(handler, event)
        else:
            result = handler(event)
        if inspect.isawaitable(result):
            await result


def _call_in_asyncio(handler, event, topic):
    import asyncio
    try:
        result = handler(event)
        if inspect.isawaitable(result):
            asyncio.ensure_future(result)
    except Exception:
        logger.exception("event handler %r for topic %r raised", handler, topic)


def _start_handler(client, topic, subscription, replaced):
    if replaced is not None:
        replaced.close()
    subscription.start()
    client._core.send({"op": "subscribe-topic", "topic": topic})


def _stop_handler(client, topics, topic, subscription):
    subscription.close()
    if not topics.wanted(topic):
        client._core.send({"op": "unsubscribe-topic", "topic": topic})


class EventStream:
    """The events of one topic as they are logged: ``async with
    client.events(topic) as stream: async for timestamp, msg in stream`` (or
    ``with`` / ``for`` with a blocking client).  Events logged after the
    block is entered are all delivered, in order; leaving it unsubscribes."""

    def __init__(self, client, topic):
        self._client = client
        self._topic = topic
        self._mode = None

    def __repr__(self):
        return f"<EventStream topic={self._topic!r}>"

    # subscription

    async def __aenter__(self):
        from trioflow.server.background import current_library
        if not self._client.asynchronous:
            raise TypeError("use 'with client.events(topic)' with a blocking client")
        if current_library() == "asyncio":
            import asyncio
            self._loop = asyncio.get_running_loop()
            self._queue = asyncio.Queue()
            self._mode = "asyncio"
        else:
            self._send, self._receive = trio.open_memory_channel(math.inf)
            self._mode = "trio"
        await self._client._sync(_subscribe_stream, self._client, self)
        return self

    async def __aexit__(self, *exc_info):
        self._leave()

    def __enter__(self):
        if self._client.asynchronous:
            raise TypeError("use 'async with client.events(topic)' with an asynchronous client")
        self._queue = queue.SimpleQueue()
        self._mode = "blocking"
        self._client._sync(_subscribe_stream, self._client, self)
        return self

    def __exit__(self, *exc_info):
        self._leave()

    def _leave(self):
        if self._mode is not None:
            self._client._core._in_loop(partial(_unsubscribe_stream, self._client, self))

    def _deliver(self, event):  # the client's loop
        try:
            if self._mode == "trio":
                self._send.send_nowait(event)
            elif self._mode == "asyncio":
                self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
            else:
                self._queue.put(event)
        except (trio.ClosedResourceError, RuntimeError):
            pass

    # iteration

    def __aiter__(self):
        if self._mode not in ("trio", "asyncio"):
            raise TypeError("enter the stream first: 'async with client.events(topic) as stream'")
        return self

    async def __anext__(self):
        if self._mode == "asyncio":
            return await self._queue.get()
        try:
            return await self._receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise StopAsyncIteration from None

    def __iter__(self):
        if self._mode != "blocking":
            raise TypeError("enter the stream first: 'with client.events(topic) as stream'")
        return self

    def __next__(self):
        return self.get()

    def get(self, timeout=None):
        """The next event, waiting up to ``timeout`` seconds (blocking clients)."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no event on topic {self._topic!r} within {timeout} s") from None


async def _subscribe_stream(client, stream):
    topics = _topics(client)
    with topics.lock:
        topics.streams[stream._topic].append(stream)
    await client._core.request({"op": "subscribe-topic", "topic": stream._topic})


def _unsubscribe_stream(client, stream):
    topics = _topics(client)
    with topics.lock:
        streams = topics.streams.get(stream._topic, [])
        if stream in streams:
            streams.remove(stream)
        if not streams:
            topics.streams.pop(stream._topic, None)
    if stream._mode == "trio":
        stream._send.close()
    if not topics.wanted(stream._topic) and client.status == "running":
        client._core.send({"op": "unsubscribe-topic", "topic": stream._topic})


# ----------------------------------------------------------------------- Client methods

def log_event(self, topic, msg):
    """Log ``msg`` (msgpack-serializable) under ``topic``, or under each of a
    list of topics, with the scheduler's timestamp.  Inside a task, use the
    worker's client: ``get_client().log_event(...)``."""
    _check_msgpack(msg, "Message")
    return self._sync(_log_event, self, topic, msg)


async def _log_event(client, topic, msg):
    await client._core.request({"op": "log-event", "topic": topic, "msg": msg})


def get_events(self, topic=None):
    """The logged ``(timestamp, msg)`` events of ``topic``, oldest first; with
    no topic, a dict of every topic's events."""
    return self._sync(_get_events, self, topic)


async def _get_events(client, topic):
    result = await client._core.request({"op": "get-events", "topic": topic})
    if topic is not None:
        return tuple(tuple(event) for event in result)
    return {one: tuple(tuple(event) for event in events) for one, events in result.items()}


def subscribe_topic(self, topic, handler):
    """Call ``handler(event)`` for every event logged under ``topic`` from now
    on; ``event`` is ``(timestamp, msg)``.  A coroutine function is awaited.
    One handler per topic: subscribing again replaces it."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {handler!r}")
    topics = _topics(self)
    subscription = _HandlerSubscription(self, topic, handler)
    with topics.lock:
        replaced = topics.handlers.get(topic)
        topics.handlers[topic] = subscription
    self._core._in_loop(partial(_start_handler, self, topic, subscription, replaced))


def unsubscribe_topic(self, topic):
    """Stop calling the handler of ``topic``."""
    topics = _topics(self)
    with topics.lock:
        subscription = topics.handlers.pop(topic, None)
    if subscription is None:
        raise ValueError(f"No event handler known for topic {topic}.")
    self._core._in_loop(partial(_stop_handler, self, topics, topic, subscription))


def events(self, topic) -> EventStream:
    """Follow ``topic`` as an iterator of its new events: ``async with
    client.events("alerts") as stream: async for timestamp, msg in stream``
    (``with`` and ``for`` with a blocking client)."""
    return EventStream(self, topic)
