"""The server halves of publish-subscribe (spec: ``distributed.Pub`` and
``distributed.Sub``; user objects: ``trioflow/client/primitives/pubsub.py``).

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
import weakref
from collections import Counter, deque
from itertools import count

import trio

from trioflow.errors import CommClosedError, SerializationError
from trioflow.protocol.serialize import describe, pickle_error, serialize
from trioflow.server.extensions.base import SchedulerExtension, WorkerExtension

logger = logging.getLogger("trioflow.pubsub")

#: seconds the scheduler waits for a publishing worker to acknowledge a new subscriber
CONFIRM_TIMEOUT = 5.0
#: most messages one client poll takes
TAKE_LIMIT = 10_000


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
    worker's trio loop, except ``publish_threadsafe``, ``soon`` and
    ``run_for_task``, through which ``Pub``/``Sub`` used from task threads
    reach the loop."""

    name = "pubsub"

    def __init__(self, worker):
        super().__init__(worker)
        self.topics: dict = {}
        self._links: dict = {}
        self._registrations = count(1)
        self._from_threads: deque = deque()  # puts from task threads, for the loop
        self._drain_scheduled = False
        self._waits: set = set()  # cancel scopes of task threads' waits (run_for_task)
        self._closing = False
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

    # ------------------------------------------------------------ tasks' threads

    def in_loop(self) -> bool:
        try:
            return trio.lowlevel.current_trio_token() is self.worker.trio_token
        except RuntimeError:
            return False

    def soon(self, fn, *args) -> None:
        """Run ``fn(*args)`` in the worker's loop: now if this is it, else soon
        (in call order); nothing if the worker's loop has ended."""
        if self.in_loop():
            fn(*args)
            return
        try:
            self.worker.trio_token.run_sync_soon(fn, *args)
        except trio.RunFinishedError:
            pass

    def run_for_task(self, async_fn, *args):
        """``async_fn(*args)`` for the task calling: its coroutine in the
        worker's loop (an ``async def`` task awaits it), else the result, the
        calling thread blocked meanwhile.  A sync task's wait ends when its
        future is cancelled (TaskCancelled, as at a ``checkpoint()``) or the
        worker closes (CommClosedError)."""
        if self.in_loop():
            return async_fn(*args)
        from trioflow.server.context import current_task
        task = current_task()
        outcome = trio.from_thread.run(self._wait_for_task, task, async_fn, args,
                                       trio_token=self.worker.trio_token)
        if outcome is _CANCELLED:
            from trioflow.server.execution import TaskCancelled
            raise TaskCancelled(f"task {task.key!r} was cancelled")
        return outcome

    async def _wait_for_task(self, task, async_fn, args):
        execution = None if task is None else task.execution
        with trio.CancelScope() as scope:
            if execution is not None and execution.cancel_scope is None:
                # what cancelling the task's future cancels (Executor.cancel)
                execution.cancel_scope = scope
            if self._closing or (execution is not None and execution.cancelled):
                scope.cancel()
            self._waits.add(scope)
            try:
                return await async_fn(*args)
            finally:
                self._waits.discard(scope)
                if execution is not None and execution.cancel_scope is scope:
                    execution.cancel_scope = None
        if self._closing:
            raise CommClosedError(f"{self.worker!r} closed while a task waited on Pub/Sub")
        return _CANCELLED

    async def close(self) -> None:
        self._closing = True
        for scope in list(self._waits):
            scope.cancel()

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
                    serialized = pickle_message(name, message)
                payload = serialized
            self._link(address).send({"op": "pubsub-msg", "name": name, "msg": payload})
        if topic.clients:
            if serialized is None:
                serialized = pickle_message(name, message)
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


def pickle_message(name, message):
    """``message`` pickled for topic ``name``; SerializationError naming both
    if it cannot be."""
    try:
        return serialize(message)
    except Exception as exc:
        raise SerializationError(
            f"cannot publish on topic {name!r}: "
            f"{pickle_error(describe(message), exc)}") from exc


_CANCELLED = object()
