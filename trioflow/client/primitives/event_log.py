"""Structured event logs, the client side (scheduler half:
``trioflow/server/extensions/event_log.py``): ``log_event(topic, msg)`` records ``(timestamp,
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

import logging
import math
import threading
import weakref
from collections import defaultdict, deque

import trio

from trioflow.client.primitives.base import seconds
from trioflow.errors import TimeoutError
from trioflow.protocol.primitives import check_msgpack

logger = logging.getLogger("trioflow.events")


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
#: client -> its _Topics, made on first use
_registry: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _topics(client) -> _Topics:
    topics = _registry.get(client)
    if topics is None:
        with _topics_lock:
            topics = _registry.get(client)
            if topics is None:
                topics = _registry[client] = _Topics(client)
                client.port.on_message("topic-event", topics.on_event)
    return topics


class _HandlerSubscription:
    """Calls one handler for each event of a topic, in order, where the
    subscriber expects it (``ClientPort.callback``)."""

    def __init__(self, client, topic, handler):
        self.client = client
        self.topic = topic
        self.handler = handler
        self._call = client.port.callback(handler)  # here: it notes the caller's loop
        self._send, self._receive = trio.open_memory_channel(math.inf)

    def start(self):  # loop thread
        self.client.port.start_soon(self._run)

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


def _start_handler(client, topic, subscription, replaced):
    if replaced is not None:
        replaced.close()
    subscription.start()
    client.port.send({"op": "subscribe-topic", "topic": topic})


def _stop_handler(client, topics, topic, subscription):
    subscription.close()
    if not topics.wanted(topic):
        client.port.send({"op": "unsubscribe-topic", "topic": topic})


class EventStream:
    """The events of one topic as they are logged: ``async with
    client.events(topic) as stream: async for timestamp, msg in stream`` (or
    ``with`` / ``for`` with a blocking client).  Events logged after the
    block is entered are all delivered, in order; leaving it unsubscribes
    (and ends an ``async for``)."""

    def __init__(self, client, topic):
        self._client = client
        self._topic = topic
        self._entered: str | None = None  # "async" or "blocking"
        self._events: deque = deque()  # appended in the client's loop
        self._arrived: trio.Event | None = None  # the client's loop
        self._left = False

    def __repr__(self):
        return f"<EventStream topic={self._topic!r}>"

    # subscription

    async def __aenter__(self):
        if not self._client.asynchronous:
            raise TypeError("use 'with client.events(topic)' with a blocking client")
        self._entered = "async"
        await self._client.port.run(_subscribe_stream, self._client, self)
        return self

    async def __aexit__(self, *exc_info):
        self._leave()

    def __enter__(self):
        if self._client.asynchronous:
            raise TypeError("use 'async with client.events(topic)' with an asynchronous client")
        self._entered = "blocking"
        self._client.port.run(_subscribe_stream, self._client, self)
        return self

    def __exit__(self, *exc_info):
        self._leave()

    def _leave(self):
        if self._entered is not None:
            self._client.port.call_soon(_unsubscribe_stream, self._client, self)

    def _deliver(self, event):  # the client's loop
        self._events.append(event)
        self._wake()

    def _wake(self):  # the client's loop
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None

    # iteration: one coroutine waits in the client's loop, run in the caller's face

    async def _next(self, timeout):
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while not self._events:
                if self._left:
                    return _LEFT
                if self._arrived is None:
                    self._arrived = trio.Event()
                await self._arrived.wait()
            return self._events.popleft()
        raise TimeoutError(f"no event on topic {self._topic!r} within {timeout} s")

    def _put_back(self, event):  # an asyncio caller gave up on it
        if event is not _LEFT:
            self._events.appendleft(event)

    def __aiter__(self):
        if self._entered != "async":
            raise TypeError("enter the stream first: 'async with client.events(topic) as stream'")
        return self

    async def __anext__(self):
        event = await self._client.port.run(self._next, None, undo=self._put_back)
        if event is _LEFT:
            raise StopAsyncIteration
        return event

    def __iter__(self):
        if self._entered != "blocking":
            raise TypeError("enter the stream first: 'with client.events(topic) as stream'")
        return self

    def __next__(self):
        event = self._get(None)
        if event is _LEFT:
            raise StopIteration
        return event

    def get(self, timeout=None):
        """The next event, waiting up to ``timeout`` seconds (blocking clients)."""
        event = self._get(seconds(timeout))
        if event is _LEFT:
            raise RuntimeError(f"the event stream of topic {self._topic!r} was left: "
                               "get events inside its 'with' block")
        return event

    def _get(self, timeout):
        if self._events:  # here already: no trip to the loop (popleft is atomic)
            try:
                return self._events.popleft()
            except IndexError:
                pass
        return self._client.port.run(self._next, timeout, undo=self._put_back)


_LEFT = object()  # what _next gives once the stream was left and is empty


async def _subscribe_stream(client, stream):
    topics = _topics(client)
    with topics.lock:
        topics.streams[stream._topic].append(stream)
    await client.port.ask({"op": "subscribe-topic", "topic": stream._topic})


def _unsubscribe_stream(client, stream):
    topics = _topics(client)
    with topics.lock:
        streams = topics.streams.get(stream._topic, [])
        if stream in streams:
            streams.remove(stream)
        if not streams:
            topics.streams.pop(stream._topic, None)
    stream._left = True
    stream._wake()
    if not topics.wanted(stream._topic) and client.status == "running":
        client.port.send({"op": "unsubscribe-topic", "topic": stream._topic})


def log_event(port, topic, msg):
    """``Client.log_event``."""
    check_msgpack(msg, "Message")
    return port.request({"op": "log-event", "topic": topic, "msg": msg}, _none)


def get_events(port, topic=None):
    """``Client.get_events``."""
    def finish(result):
        if topic is not None:
            return tuple(tuple(event) for event in result)
        return {one: tuple(tuple(event) for event in events) for one, events in result.items()}
    return port.request({"op": "get-events", "topic": topic}, finish)


def subscribe_topic(client, topic, handler):
    """``Client.subscribe_topic``."""
    if not callable(handler):
        raise TypeError(f"handler must be callable, got {handler!r}")
    topics = _topics(client)
    subscription = _HandlerSubscription(client, topic, handler)
    with topics.lock:
        replaced = topics.handlers.get(topic)
        topics.handlers[topic] = subscription
    client.port.call_soon(_start_handler, client, topic, subscription, replaced)


def unsubscribe_topic(client, topic):
    """``Client.unsubscribe_topic``."""
    topics = _topics(client)
    with topics.lock:
        subscription = topics.handlers.pop(topic, None)
    if subscription is None:
        raise ValueError(f"No event handler known for topic {topic}.")
    client.port.call_soon(_stop_handler, client, topics, topic, subscription)


def _none(result):
    return None
