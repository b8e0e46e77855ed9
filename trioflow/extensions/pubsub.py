"""Publish-subscribe (spec: ``distributed.Pub`` and ``distributed.Sub``).

Every ``Sub`` gets every message that any ``Pub`` of its topic puts after the
subscription was made, in the order each publisher put them.  Messages put
while a topic has no subscriber are dropped, as in dask.

Who talks to whom:

- The scheduler (``PubSubSchedulerExtension``) keeps only the registry: which
  workers publish a topic, and which workers and which client subscriptions
  subscribe to it.  Whenever a topic's subscribers change it tells the
  topic's publishing workers (``pubsub-update``: the subscriber workers, and
  whether clients subscribe).
- A publisher on a worker sends each message straight to the subscriber
  workers over its peer connections, and hands it in place to subscribers on
  its own worker.  Only while clients subscribe does it also send the message
  to the scheduler, for them.
- Clients are not servers: a client's ``Pub`` sends to the scheduler, which
  forwards to the subscriber workers and queues the message for each client
  subscription; a client's ``Sub`` collects its queue with long polls.

Every message is one one-way ``Connection.send`` (batched by the connection),
never a round trip per message.
"""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
import weakref
from collections import Counter, deque
from itertools import count

import trio

from trioflow.errors import CommClosedError, SerializationError, TimeoutError
from trioflow.extensions.base import SchedulerExtension, WorkerExtension
from trioflow.protocol.serialize import deserialize, describe, pickle_error, serialize
from trioflow.utils import parse_timedelta

logger = logging.getLogger("trioflow.pubsub")

#: seconds a client's get waits on the scheduler per request before asking again
POLL = 5.0
#: seconds the scheduler waits for a publishing worker to acknowledge a new subscriber
CONFIRM_TIMEOUT = 5.0
#: most messages one client poll takes
TAKE_LIMIT = 10_000
#: seconds a task thread waiting in ``Sub.get`` sleeps before it checks whether
#: its task was cancelled or its worker is closing
THREAD_WAIT_SLICE = 0.5


# ---------------------------------------------------------------------------- scheduler


class _ClientQueue:
    """Messages waiting for one client subscription."""

    __slots__ = ("messages", "_arrived")

    def __init__(self):
        self.messages: deque = deque()
        self._arrived: trio.Event | None = None

    def put(self, payload) -> None:
        self.messages.append(payload)
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None

    async def wait(self) -> None:
        if self._arrived is None:
            self._arrived = trio.Event()
        await self._arrived.wait()

    def take(self) -> list:
        n = min(len(self.messages), TAKE_LIMIT)
        return [self.messages.popleft() for _ in range(n)]


class _Topic:
    __slots__ = ("publishers", "workers", "clients")

    def __init__(self):
        self.publishers: dict = {}  # publishing worker -> its registration number
        self.workers: set = set()  # subscribing workers
        self.clients: dict = {}  # (client id, subscription id) -> _ClientQueue

    def empty(self) -> bool:
        return not (self.publishers or self.workers or self.clients)


class PubSubSchedulerExtension(SchedulerExtension):
    """The registry of publishers and subscribers, and the relay for clients."""

    name = "pubsub"

    def __init__(self, scheduler):
        super().__init__(scheduler)
        self.topics: dict = {}
        #: messages that passed through the scheduler, per topic (worker-to-worker
        #: traffic never shows up here)
        self.message_counts: Counter = Counter()
        self.handlers = {
            "pubsub-add-publisher": self._add_publisher,
            "pubsub-remove-publisher": self._remove_publisher,
            "pubsub-add-subscriber": self._add_subscriber,
            "pubsub-remove-subscriber": self._remove_subscriber,
            "pubsub-confirm": self._confirm,
            "pubsub-msg": self._message,
            "pubsub-get": self._get,
        }

    def _topic(self, name) -> _Topic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = _Topic()
        return topic

    def _forget_if_empty(self, name) -> None:
        topic = self.topics.get(name)
        if topic is not None and topic.empty():
            del self.topics[name]

    def _tell_publishers(self, name, topic: _Topic, only=None) -> None:
        """Send the topic's subscribers to its publishing workers."""
        for address, registration in topic.publishers.items():
            if only is not None and address != only:
                continue
            conn = self.scheduler.worker_comms.get(address)
            if conn is not None:
                conn.send({"op": "pubsub-update", "name": name, "registration": registration,
                           "workers": sorted(topic.workers), "clients": bool(topic.clients)})

    # ------------------------------------------------------------ registry

    def _add_publisher(self, peer, msg):
        name = msg["name"]
        topic = self._topic(name)
        topic.publishers[peer] = msg["registration"]
        self._tell_publishers(name, topic, only=peer)

    def _remove_publisher(self, peer, msg):
        name = msg["name"]
        topic = self.topics.get(name)
        if topic is not None and topic.publishers.get(peer) == msg["registration"]:
            del topic.publishers[peer]
            self._forget_if_empty(name)

    def _add_subscriber(self, peer, msg):
        name = msg["name"]
        topic = self._topic(name)
        if peer in self.scheduler.worker_comms:
            topic.workers.add(peer)
        else:
            topic.clients[(peer, msg["sub"])] = _ClientQueue()
        self._tell_publishers(name, topic)

    def _remove_subscriber(self, peer, msg):
        name = msg["name"]
        topic = self.topics.get(name)
        if topic is None:
            return
        if peer in self.scheduler.worker_comms:
            topic.workers.discard(peer)
        else:
            topic.clients.pop((peer, msg.get("sub")), None)
        self._tell_publishers(name, topic)
        self._forget_if_empty(name)

    def _confirm(self, peer, msg):
        """Answers once every worker publishing the topic has handled the
        updates sent so far (they reach a worker in order, before this ping)."""
        topic = self.topics.get(msg["name"])
        conns = [] if topic is None else [
            self.scheduler.worker_comms[address] for address in topic.publishers
            if address != peer and address in self.scheduler.worker_comms]
        if not conns:
            return True
        return self._ping_all(conns)

    async def _ping_all(self, conns) -> bool:
        async def ping(conn):
            with trio.move_on_after(CONFIRM_TIMEOUT):
                try:
                    await conn.request({"op": "pubsub-ping"})
                except Exception as exc:  # a worker that left needs no telling
                    logger.debug("pubsub ping to %s failed: %r", conn.peer_address, exc)

        async with trio.open_nursery() as nursery:
            for conn in conns:
                nursery.start_soon(ping, conn)
        return True

    def peer_left(self, peer: str) -> None:
        for name, topic in list(self.topics.items()):
            topic.publishers.pop(peer, None)
            changed = peer in topic.workers
            topic.workers.discard(peer)
            for subscription in [s for s in topic.clients if s[0] == peer]:
                del topic.clients[subscription]
                changed = True
            if changed:
                self._tell_publishers(name, topic)
            self._forget_if_empty(name)

    # ------------------------------------------------------------ messages

    def _message(self, peer, msg):
        name = msg["name"]
        self.message_counts[name] += 1
        topic = self.topics.get(name)
        if topic is None:
            return
        payload = msg["msg"]
        for queue in topic.clients.values():
            queue.put(payload)
        if not msg.get("clients_only"):
            forward = {"op": "pubsub-msg", "name": name, "msg": payload}
            for address in topic.workers:
                conn = self.scheduler.worker_comms.get(address)
                if conn is not None:
                    conn.send(forward)

    def _get(self, peer, msg):
        topic = self.topics.get(msg["name"])
        queue = None if topic is None else topic.clients.get((peer, msg["sub"]))
        if queue is None:
            raise ValueError(f"no subscription {msg['sub']!r} to topic {msg['name']!r} "
                             f"from this client (was it closed?)")
        wait = float(msg.get("wait") or 0)
        if queue.messages or wait <= 0:
            return queue.take()
        return self._get_later(queue, wait)

    async def _get_later(self, queue: _ClientQueue, wait: float) -> list:
        with trio.move_on_after(wait):
            while not queue.messages:
                await queue.wait()
        return queue.take()


# ---------------------------------------------------------------------------- worker


class _WorkerTopic:
    __slots__ = ("subscribers", "live", "subscribed", "publishers", "registration", "known",
                 "remote", "clients", "backlog", "leaving")

    def __init__(self):
        self.subscribers: weakref.WeakSet = weakref.WeakSet()  # Subs on this worker
        # Subs added and not yet finalized.  Not len(subscribers): a Sub's
        # finalizer runs before the WeakSet drops it, so a count taken there
        # (or in the loop before the dying thread got to it) still sees it.
        self.live = 0
        self.subscribed = False  # what the scheduler was told
        self.publishers = 0  # live Pubs on this worker
        self.registration = 0  # number of the current publisher registration (0: none)
        self.known = False  # the scheduler answered the current registration
        self.remote: list = []  # other workers that subscribe
        self.clients = False  # whether clients subscribe
        self.backlog: list = []  # put before the answer came
        self.leaving = False  # unregister once the backlog is out

    def idle(self) -> bool:
        return not (self.live or self.subscribed or self.publishers
                    or self.registration)


class _Link:
    """An ordered stream of one-way messages to one peer worker; messages sent
    while it connects wait in ``queue``."""

    __slots__ = ("conn", "queue")

    def __init__(self):
        self.conn = None
        self.queue: list = []

    def send(self, msg) -> None:
        if self.conn is not None:
            self.conn.send(msg)
        else:
            self.queue.append(msg)


class PubSubWorkerExtension(WorkerExtension):
    """A worker's publishers and subscribers.  Every method runs in the
    worker's trio loop, except ``publish_threadsafe``; ``Pub``/``Sub`` used
    from task threads call in with ``run_sync_soon`` (in call order) or
    ``trio.from_thread``, and wait for messages on a thread condition."""

    name = "pubsub"

    def __init__(self, worker):
        super().__init__(worker)
        self.topics: dict = {}
        self._links: dict = {}
        self._registrations = count(1)
        self._from_threads: deque = deque()  # puts from task threads, for the loop
        self._drain_scheduled = False
        self.handlers = {
            "pubsub-msg": self._receive,
            "pubsub-update": self._update,
            "pubsub-ping": lambda msg, inproc: True,
        }

    def _topic(self, name) -> _WorkerTopic:
        topic = self.topics.get(name)
        if topic is None:
            topic = self.topics[name] = _WorkerTopic()
        return topic

    def _forget_if_idle(self, name) -> None:
        topic = self.topics.get(name)
        if topic is not None and topic.idle():
            del self.topics[name]

    def _to_scheduler(self, msg: dict) -> None:
        if self.worker.scheduler is not None:
            self.worker.scheduler.send(msg)

    # ------------------------------------------------------------ subscribing

    def add_subscriber(self, sub) -> None:
        topic = self._topic(sub.name)
        topic.subscribers.add(sub)
        topic.live += 1
        self.reconcile(sub.name)

    def remove_subscriber(self, name) -> None:
        """A Sub on this worker was finalized."""
        topic = self.topics.get(name)
        if topic is not None:
            topic.live -= 1
            self.reconcile(name)

    async def subscribe_confirmed(self, sub) -> None:
        self.add_subscriber(sub)
        await self.confirm(sub.name)

    async def confirm(self, name) -> None:
        """Return once every worker publishing ``name`` knows this worker subscribes."""
        await self.worker.scheduler.request({"op": "pubsub-confirm", "name": name})

    def reconcile(self, name) -> None:
        """Tell the scheduler whether this worker subscribes to ``name``, if that changed."""
        topic = self.topics.get(name)
        if topic is None:
            return
        wanted = topic.live > 0
        if wanted != topic.subscribed:
            topic.subscribed = wanted
            op = "pubsub-add-subscriber" if wanted else "pubsub-remove-subscriber"
            self._to_scheduler({"op": op, "name": name})
        self._forget_if_idle(name)

    def _receive(self, msg, inproc):
        topic = self.topics.get(msg["name"])
        if topic is not None:
            payload = msg["msg"]
            for sub in list(topic.subscribers):
                sub._deliver(payload)

    # ------------------------------------------------------------ publishing

    def add_publisher(self, name) -> None:
        topic = self._topic(name)
        topic.publishers += 1
        topic.leaving = False
        if topic.registration == 0:
            topic.registration = next(self._registrations)
            topic.known = False
            self._to_scheduler({"op": "pubsub-add-publisher", "name": name,
                                "registration": topic.registration})

    def remove_publisher(self, name) -> None:
        topic = self.topics.get(name)
        if topic is None:
            return
        topic.publishers -= 1
        if topic.publishers > 0:
            return
        if topic.backlog and not topic.known:
            topic.leaving = True  # the Pub is gone, but what it put still goes out
        else:
            self._unregister(name, topic)

    def _unregister(self, name, topic: _WorkerTopic) -> None:
        if topic.registration:
            self._to_scheduler({"op": "pubsub-remove-publisher", "name": name,
                                "registration": topic.registration})
        topic.registration = 0
        topic.known = topic.leaving = topic.clients = False
        topic.remote = []
        topic.backlog = []
        self._forget_if_idle(name)

    def _update(self, msg, inproc):
        name = msg["name"]
        topic = self.topics.get(name)
        if topic is None or msg["registration"] != topic.registration:
            return  # about a registration that has ended
        topic.remote = [a for a in msg["workers"] if a != self.worker.address]
        topic.clients = bool(msg["clients"])
        if not topic.known:
            topic.known = True
            backlog, topic.backlog = topic.backlog, []
            for message, serialized in backlog:
                self._send_out(name, topic, message, serialized)
            if topic.leaving:
                self._unregister(name, topic)

    def needs_pickle(self, name) -> bool:
        """Whether a message on ``name`` will have to be pickled (so a task
        thread can do it, and see the error if it cannot be)."""
        topic = self.topics.get(name)
        return topic is not None and (topic.clients or any(
            not a.startswith("inproc://") for a in topic.remote))

    def publish(self, name, message, serialized=None) -> None:
        topic = self.topics.get(name)
        if topic is None:
            return
        for sub in list(topic.subscribers):
            sub._deliver(message)
        if not topic.registration:
            return
        if not topic.known:
            topic.backlog.append((message, serialized))
        else:
            self._send_out(name, topic, message, serialized)

    def publish_threadsafe(self, name, message, serialized=None) -> None:
        """``publish`` from another thread (a sync task's).  Puts queue up and
        one loop callback takes all that queued meanwhile, in order: a burst of
        puts costs the loop one wake-up, not one each."""
        self._from_threads.append((name, message, serialized))
        if not self._drain_scheduled:
            self._drain_scheduled = True
            try:
                self.worker.trio_token.run_sync_soon(self._drain_from_threads)
            except trio.RunFinishedError:
                pass

    def _drain_from_threads(self) -> None:
        # cleared before draining: a put racing with this drain schedules another
        self._drain_scheduled = False
        queue = self._from_threads
        while queue:
            name, message, serialized = queue.popleft()
            try:
                self.publish(name, message, serialized)
            except Exception:  # a run_sync_soon callback must not raise into trio
                logger.exception("worker %s could not publish a message on topic %r",
                                 self.worker.address, name)

    def _send_out(self, name, topic: _WorkerTopic, message, serialized) -> None:
        if not (topic.remote or topic.clients):
            return
        for address in topic.remote:
            if address.startswith("inproc://"):
                payload = message  # same process: no pickling, as for task data
            else:
                if serialized is None:
                    serialized = _pickle(name, message)
                payload = serialized
            self._link(address).send({"op": "pubsub-msg", "name": name, "msg": payload})
        if topic.clients:
            if serialized is None:
                serialized = _pickle(name, message)
            self._to_scheduler({"op": "pubsub-msg", "name": name, "msg": serialized,
                                "clients_only": True})

    def _link(self, address) -> _Link:
        link = self._links.get(address)
        if link is not None and link.conn is not None and link.conn.closed:
            link = None
        if link is None:
            link = self._links[address] = _Link()
            self.worker.nursery.start_soon(self._connect, address, link)
        return link

    async def _connect(self, address, link: _Link) -> None:
        try:
            conn = await self.worker._peers.get(address)
        except Exception as exc:
            logger.info("worker %s cannot reach subscriber %s (%r): %d message(s) dropped",
                        self.worker.address, address, exc, len(link.queue))
            if self._links.get(address) is link:
                del self._links[address]
            return
        for msg in link.queue:
            conn.send(msg)
        link.queue = []
        link.conn = conn


def _seconds(timeout) -> float | None:
    """A ``timeout=`` (seconds, "200ms", a timedelta or None) in seconds."""
    if hasattr(timeout, "total_seconds"):
        return timeout.total_seconds()
    return parse_timedelta(timeout)


def _pickle(name, message):
    try:
        return serialize(message)
    except Exception as exc:
        raise SerializationError(
            f"cannot publish on topic {name!r}: "
            f"{pickle_error(describe(message), exc)}") from exc


# ---------------------------------------------------------------------------- user objects


def _resolve(kind, worker, client):
    if worker is not None and client is not None:
        raise ValueError(f"{kind} takes worker= or client=, not both")
    if worker is None and client is None:
        from trioflow.server.context import current_task
        task = current_task()
        if task is not None:
            worker = task.worker
        else:
            from trioflow.task_context import get_client
            client = get_client()
    return worker, client


def _in_loop(worker) -> bool:
    try:
        return trio.lowlevel.current_trio_token() is worker.trio_token
    except RuntimeError:
        return False


def _extension(worker) -> PubSubWorkerExtension:
    try:
        return worker.extensions["pubsub"]
    except KeyError:
        raise RuntimeError(f"{worker!r} has no pubsub extension") from None


def _soon(worker, fn, *args) -> None:
    """Run ``fn(*args)`` in the worker's loop: now if this is it, else soon
    (in call order); nothing if the worker's loop has ended."""
    if _in_loop(worker):
        fn(*args)
        return
    try:
        worker.trio_token.run_sync_soon(fn, *args)
    except trio.RunFinishedError:
        pass


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
            _soon(self.worker, ext.add_publisher, name)
            self._finalizer = weakref.finalize(self, _soon, self.worker, ext.remove_publisher,
                                               name)

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
            if _in_loop(self.worker):
                ext.publish(self.name, msg)
                return
            serialized = _pickle(self.name, msg) if ext.needs_pickle(self.name) else None
            ext.publish_threadsafe(self.name, msg, serialized)
        else:
            self.client._core.send({"op": "pubsub-msg", "name": self.name,
                                    "msg": _pickle(self.name, msg)})


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
        self._buffer: deque = deque()
        self._arrived: trio.Event | None = None  # worker's loop
        self._condition = threading.Condition()  # for task threads waiting in get
        self._thread_waiters = 0
        self._id = uuid.uuid4().hex
        if self.worker is not None:
            ext = self._extension = _extension(self.worker)
            if _in_loop(self.worker):
                ext.add_subscriber(self)
            else:
                trio.from_thread.run(ext.subscribe_confirmed, self,
                                     trio_token=self.worker.trio_token)
            self._finalizer = weakref.finalize(self, _soon, self.worker, ext.remove_subscriber,
                                               name)
        else:
            core = self.client._core
            core.send({"op": "pubsub-add-subscriber", "name": name, "sub": self._id})
            self._finalizer = weakref.finalize(
                self, core.send, {"op": "pubsub-remove-subscriber", "name": name,
                                  "sub": self._id})
            if not self.client.asynchronous:
                self.client._sync(self._confirm)

    def __repr__(self):
        return f"<Sub: {self.name!r}>"

    def __await__(self):
        return self._ready().__await__()

    async def _ready(self):
        if self.worker is not None:
            await self._extension.confirm(self.name)
        else:
            await self.client._sync(self._confirm)
        return self

    async def _confirm(self):
        await self.client._core.request({"op": "pubsub-confirm", "name": self.name})

    # ------------------------------------------------------------ receiving

    def _deliver(self, payload) -> None:
        """A message arrived (worker's loop)."""
        self._buffer.append(payload)
        if self._arrived is not None:
            self._arrived.set()
            self._arrived = None
        # a waiter counts itself (under the lock) before it looks at the buffer,
        # so one that saw it empty is seen here
        if self._thread_waiters:
            with self._condition:
                self._condition.notify_all()

    def get(self, timeout=None):
        """The next message; ``trioflow.TimeoutError`` if none comes within
        ``timeout`` seconds (a number or a string like ``"200ms"``)."""
        timeout = _seconds(timeout)
        if self.worker is not None:
            if _in_loop(self.worker):
                return self._worker_get(timeout)
            return deserialize(self._thread_get(timeout))
        if self.client.asynchronous:
            return self._client_get_async(timeout)
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return deserialize(self._buffer.popleft())
            except IndexError:
                self.client._sync(self._fill, timeout, deadline - time.monotonic())

    next = get

    def _thread_get(self, timeout):
        """Wait in a task thread for the next message (not deserialized)."""
        from trioflow.task_context import checkpoint
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        with self._condition:
            self._thread_waiters += 1
            try:
                while True:
                    try:
                        return self._buffer.popleft()
                    except IndexError:
                        pass
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise TimeoutError(f"no message on topic {self.name!r} within "
                                           f"{timeout} s")
                    if self.worker.status in ("closing", "closed"):
                        raise CommClosedError(f"{self.worker!r} closed while waiting for a "
                                              f"message on topic {self.name!r}")
                    checkpoint()  # a cancelled task stops waiting
                    self._condition.wait(min(remaining, THREAD_WAIT_SLICE))
            finally:
                self._thread_waiters -= 1

    async def _worker_get(self, timeout):
        with trio.move_on_after(math.inf if timeout is None else timeout):
            while not self._buffer:
                if self._arrived is None:
                    self._arrived = trio.Event()
                await self._arrived.wait()
        if not self._buffer:
            raise TimeoutError(f"no message on topic {self.name!r} within {timeout} s")
        return deserialize(self._buffer.popleft())

    async def _client_get_async(self, timeout):
        # the message is taken here, in the caller's loop, once the wait is
        # over: an asyncio caller cancelled in between leaves it in the buffer
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            try:
                return deserialize(self._buffer.popleft())
            except IndexError:
                await self.client._sync(self._fill, timeout, deadline - time.monotonic())

    async def _fill(self, timeout, remaining):
        """Wait in the client's loop until messages are in the buffer, asking
        the scheduler with long polls; TimeoutError once ``remaining`` is over."""
        deadline = trio.current_time() + remaining
        while not self._buffer:
            remaining = deadline - trio.current_time()
            if remaining <= 0:
                raise TimeoutError(f"no message on topic {self.name!r} within {timeout} s")
            messages = await self.client._core.request(
                {"op": "pubsub-get", "name": self.name, "sub": self._id,
                 "wait": min(remaining, POLL)},
                on_abandoned=self._buffer.extend)
            self._buffer.extend(messages)

    def __iter__(self):
        return self

    def __next__(self):
        return self.get()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self.get()
