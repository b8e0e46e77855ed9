"""Actors, the user side (worker half: ``trioflow/server/extensions/actors.py``):
one instance of a class that lives on one worker and is called
directly, without the scheduler.

``client.submit(Counter, actor=True)`` runs ``Counter()`` as a task.  The
worker keeps the instance (``Worker.actors``) and stores an ``Actor`` proxy
as the task's value, so ``future.result()`` and the tasks that depend on the
future get a proxy, never the instance.  A method call on a proxy is one
request to the holding worker and one reply (``ActorFuture``); calls leave a
client in the order they are made, and the worker runs them in that order,
one at a time per actor: sync methods in the worker's task threads, ``async
def`` methods in its event loop.

An actor is never recomputed: when its worker leaves, its future errs with
``ActorLostError`` and calls on its proxies raise it.
"""
from __future__ import annotations

import concurrent.futures
import weakref
from collections import deque
from functools import partial

import trio

from trioflow.client.primitives.base import find_client, seconds
from trioflow.errors import ActorLostError, SerializationError, TimeoutError, TrioflowError
from trioflow.protocol.exceptions import exception_from_reply
from trioflow.protocol.serialize import deserialize, serialize
from trioflow.server.context import current_task

# ----------------------------------------------------------------------- the proxy

#: class -> names of its callable attributes (calls, not attribute reads)
_method_names: "weakref.WeakKeyDictionary[type, frozenset]" = weakref.WeakKeyDictionary()


def _methods_of(cls) -> frozenset:
    names = _method_names.get(cls)
    if names is None:
        names = frozenset(name for name in dir(cls)
                          if not (name.startswith("__") and name.endswith("__"))
                          and callable(getattr(cls, name, None)))
        try:
            _method_names[cls] = names
        except TypeError:
            pass
    return names


def actor_proxy(instance, address: str, key) -> "Actor":
    """The proxy a worker stores as the value of actor task ``key``."""
    cls = type(instance)
    methods = _methods_of(cls)
    attributes = frozenset(
        {n for n in getattr(instance, "__dict__", ()) if not n.startswith("_")}
        | {n for n in dir(cls) if not n.startswith("_") and n not in methods})
    return Actor(key, address, cls.__name__, methods, attributes=attributes)


class Actor:
    """A handle on an actor: what ``future.result()`` gives for
    ``client.submit(cls, actor=True)``.

    ``actor.method(*args)`` sends the call to the worker holding the actor
    and returns an ``ActorFuture`` at once; ``actor.attribute`` reads an
    attribute (a round trip: blocking, or an awaitable for an asynchronous
    client and inside ``async def`` tasks).  A proxy pickles as its key and
    worker address, so it can be passed to tasks, which call the actor
    through the worker's client.  A proxy gathered by a client keeps the
    actor alive while it exists."""

    _trioflow_is_actor = True
    __slots__ = ("_key", "_address", "_cls_name", "_methods", "_client", "_future",
                 "_attributes")

    def __init__(self, key, address: str, cls_name: str, methods: frozenset, client=None,
                 future=None, attributes: frozenset = frozenset()):
        set_ = object.__setattr__
        set_(self, "_key", key)
        set_(self, "_address", address)
        set_(self, "_cls_name", cls_name)
        set_(self, "_methods", methods)
        set_(self, "_client", client)
        set_(self, "_future", future)
        #: the public attributes the instance had once made (dir() lists them)
        set_(self, "_attributes", attributes)

    @property
    def key(self):
        return self._key

    @property
    def client(self):
        """The client calls go through (the worker's client inside a task)."""
        return self._resolve()

    def __repr__(self):
        return f"<Actor: {self._cls_name}, key={self._key}>"

    def __reduce__(self):
        return (Actor, (self._key, self._address, self._cls_name, self._methods, None, None,
                        self._attributes))

    def __dir__(self):
        """The proxy's own names, the actor's methods, and the attributes it
        had once made (those set later are still read, just not listed)."""
        return sorted(set(dir(type(self))) | self._attributes
                      | {m for m in self._methods if not m.startswith("_")})

    def __getattr__(self, name):
        if (name.startswith("__") or name.startswith(("_repr_", "_ipython_"))
                or name in Actor.__slots__):
            raise AttributeError(name)
        if name in self._methods:
            return partial(self._call, name)
        return self._read(name)

    def __setattr__(self, name, value):
        raise AttributeError(f"cannot set {name!r} on {self!r}: an actor's state changes only "
                             "through its methods")

    def _trioflow_bind(self, client) -> "Actor":
        """This proxy as ``client`` gathered it: calls go through ``client``,
        and a Future it holds keeps the actor alive."""
        if self._client is client:
            return self
        return Actor(self._key, self._address, self._cls_name, self._methods, client,
                     client.port.future(self._key), self._attributes)

    def _resolve(self):
        client = self._client
        future = self._future
        if future is not None and future._state.status in ("error", "cancelled"):
            raise future._state.error_to_raise()
        if client is None or current_task() is not None:
            # in a task, actor method or not: the worker's client, also for a
            # proxy that reached it unpickled (inproc) still bound to a user's
            # client, whose face (asyncio, say) is not the task's
            return find_client()
        return client

    def _call(self, name, /, *args, **kwargs) -> "ActorFuture":
        client = self._resolve()
        if not client.port.running:
            raise TrioflowError(f"{client!r} is not running: cannot call {self!r}")
        if self._address.startswith("inproc://"):
            payload = (args, kwargs)  # same process: no copy, like every inproc value
        else:
            try:
                payload = serialize((args, kwargs))
            except Exception as exc:
                raise SerializationError(f"cannot pickle the arguments of "
                                         f"{self._cls_name}.{name}(): {exc}") from exc
        future = ActorFuture(client, self._key, name)
        msg = {"op": "actor-call", "key": self._key, "method": name, "args": payload}
        _submit(client.port, self._address, msg, future)
        return future

    def _read(self, name):
        client = self._resolve()
        return client.port.run(_read_attribute, client, self._address, self._key, name)


async def _read_attribute(client, address, key, name):
    future = ActorFuture(client, key, name)
    _send(client.port, address, {"op": "actor-getattr", "key": key, "attribute": name}, future)
    return await future._wait_in_loop()


class ActorFuture:
    """The pending result of one actor method call.

    ``result(timeout=None)`` blocks until the method returned (re-raising its
    exception); for an asynchronous client it returns an awaitable, and the
    future itself is awaitable (``await counter.increment()``) under trio
    and asyncio.  ``done()`` says whether the reply arrived."""

    __slots__ = ("_client", "_key", "_method", "_cf", "_event")

    def __init__(self, client, key, method):
        self._client = client
        self._key = key
        self._method = method
        self._cf: concurrent.futures.Future = concurrent.futures.Future()
        self._event: trio.Event | None = None  # made by a trio waiter, set in the loop

    def __repr__(self):
        return "<ActorFuture>"

    def done(self) -> bool:
        return self._cf.done()

    def result(self, timeout=None):
        port = self._client.port
        if port.asynchronous:
            return port.run(self._result_in_loop, timeout)
        if port.in_loop():
            raise RuntimeError("ActorFuture.result() would block the client's event loop; "
                               "use 'await' there")
        # a blocking caller waits on the thread-safe result cell the loop fills:
        # no trip into the loop, which would cost a call as much again
        try:
            return self._cf.result(timeout=seconds(timeout))
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"actor call {self._method!r} on {self._key!r} was not done "
                               f"after {timeout} s") from None

    def __await__(self):
        # awaitable from trio or asyncio code whatever the client's face
        return self._client.port.run(self._result_in_loop, None, asynchronous=True).__await__()

    async def _result_in_loop(self, timeout):
        with trio.move_on_after(_seconds(timeout)):
            return await self._wait_in_loop()
        raise TimeoutError(f"actor call {self._method!r} on {self._key!r} was not done "
                           f"after {timeout} s")

    async def _wait_in_loop(self):
        if not self._cf.done():
            if self._event is None:
                self._event = trio.Event()
            await self._event.wait()
        return self._cf.result()

    # completion, in the client's loop

    def _on_reply(self, reply):
        if reply is None:
            self._fail(ActorLostError(
                f"the connection to the worker holding actor {self._key!r} closed before "
                f"{self._method!r} returned: the worker is gone, and its actors with it"))
        elif "error" in reply:
            self._fail(exception_from_reply(reply))
        else:
            try:
                value = deserialize(reply.get("result"))
            except Exception as exc:
                self._fail(SerializationError(f"cannot unpickle what {self._method!r} of actor "
                                              f"{self._key!r} returned: {exc}"))
                return
            self._cf.set_result(value)
            self._wake()

    def _fail(self, exc: BaseException):
        if not self._cf.done():
            self._cf.set_exception(exc)
        self._wake()

    def _wake(self):
        if self._event is not None:
            self._event.set()


def _seconds(timeout) -> float:
    value = seconds(timeout)
    return float("inf") if value is None else value


# ----------------------------------------------------------------------- routes

#: client port -> worker address -> _Route (touched only in the client's loop)
_routes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _Route:
    """Calls from one client to one worker.  They are sent in the order they
    were made: while the connection is being opened they wait in ``backlog``."""

    __slots__ = ("port", "address", "conn", "backlog", "connecting")

    def __init__(self, port, address):
        self.port = port
        self.address = address
        self.conn = None
        self.backlog: deque = deque()
        self.connecting = False

    def send(self, msg, future: ActorFuture):
        conn = self.conn
        if conn is not None and not conn.closed and not self.backlog:
            conn.send_request(msg, future._on_reply)
            return
        self.backlog.append((msg, future))
        if not self.connecting:
            self.connecting = True
            try:
                self.port.start_soon(self._connect)
            except RuntimeError:  # the client is closing
                self.connecting = False
                self._fail_backlog(TrioflowError("the client closed"))

    async def _connect(self):
        try:
            conn = await self.port.connect_worker(self.address)
        except Exception as exc:
            self.connecting = False
            self._fail_backlog(ActorLostError(
                f"cannot reach worker {self.address}, which holds actor "
                f"{self.backlog[0][0]['key']!r}: {exc}.  Actors live on one worker and are "
                "not recomputed when it goes") if self.backlog else exc)
            return
        self.conn = conn
        self.connecting = False
        while self.backlog:
            msg, future = self.backlog.popleft()
            conn.send_request(msg, future._on_reply)

    def _fail_backlog(self, exc):
        backlog, self.backlog = self.backlog, deque()
        for _, future in backlog:
            future._fail(exc)


def _send(port, address, msg, future):
    """Send an actor request (in the client's loop)."""
    routes = _routes.get(port)
    if routes is None:
        routes = _routes[port] = {}
    route = routes.get(address)
    if route is None:
        route = routes[address] = _Route(port, address)
    route.send(msg, future)


def _submit(port, address, msg, future):
    """Send an actor request from any thread; requests keep their order
    (``call_soon`` runs callbacks in the order they were queued)."""
    try:
        port.call_soon(_send, port, address, msg, future)
    except trio.RunFinishedError:
        future._fail(TrioflowError("the client closed"))
