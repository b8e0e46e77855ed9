"""Actors: one instance of a class that lives on one worker and is called
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
import inspect
import logging
import weakref
from collections import deque
from functools import partial

import trio

from trioflow.errors import ActorLostError, SerializationError, TimeoutError, TrioflowError
from trioflow.extensions.base import WorkerExtension
from trioflow.protocol.serialize import deserialize, serialize

logger = logging.getLogger("trioflow.actors")

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
        from trioflow.client.future import Future
        return Actor(self._key, self._address, self._cls_name, self._methods, client,
                     Future(self._key, client), self._attributes)

    def _resolve(self):
        client = self._client
        if client is None:
            from trioflow.task_context import get_client
            return get_client()  # in a task, actor method or not: the worker's client
        future = self._future
        if future is not None and future._state.status in ("error", "cancelled"):
            raise future._state.error_to_raise()
        return client

    def _call(self, name, /, *args, **kwargs) -> "ActorFuture":
        client = self._resolve()
        core = client._core
        if client.status != "running" or core is None:
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
        _submit(core, self._address, msg, future)
        return future

    def _read(self, name):
        client = self._resolve()
        return client._sync(_read_attribute, client, self._address, self._key, name)


async def _read_attribute(client, address, key, name):
    future = ActorFuture(client, key, name)
    _send(client._core, address, {"op": "actor-getattr", "key": key, "attribute": name}, future)
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
        if self._client.asynchronous:
            return self._result_async(timeout)
        host = self._client._host
        if host is not None and host.in_host_loop():
            raise RuntimeError("ActorFuture.result() would block the client's event loop; "
                               "use 'await' there")
        try:
            return self._cf.result(timeout=_seconds(timeout))
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"actor call {self._method!r} on {self._key!r} was not done "
                               f"after {timeout} s") from None

    def __await__(self):
        return self._result_async(None).__await__()

    async def _result_async(self, timeout):
        from trioflow.server.background import current_library
        seconds = _seconds(timeout)
        if current_library() == "asyncio":
            import asyncio
            try:
                return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(self._cf)),
                                              seconds)
            except asyncio.TimeoutError:
                raise TimeoutError(f"actor call {self._method!r} on {self._key!r} was not "
                                   f"done after {timeout} s") from None
        with trio.move_on_after(seconds if seconds is not None else float("inf")) as scope:
            return await self._wait_in_loop()
        if scope.cancelled_caught:
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
            from trioflow.protocol.exceptions import exception_from_reply
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


def _seconds(timeout):
    if timeout is None:
        return None
    from trioflow.utils import parse_timedelta
    return parse_timedelta(timeout)


# ----------------------------------------------------------------------- client side: routes

#: client core -> worker address -> _Route (touched only in the client's loop)
_routes: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _Route:
    """Calls from one client to one worker.  They are sent in the order they
    were made: while the connection is being opened they wait in ``backlog``."""

    __slots__ = ("core", "address", "conn", "backlog", "connecting")

    def __init__(self, core, address):
        self.core = core
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
                self.core.nursery.start_soon(self._connect)
            except RuntimeError:  # the client is closing
                self.connecting = False
                self._fail_backlog(TrioflowError("the client closed"))

    async def _connect(self):
        try:
            conn = await self.core.pool.get(self.address)
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


def _send(core, address, msg, future):
    """Send an actor request (in the client's loop)."""
    routes = _routes.get(core)
    if routes is None:
        routes = _routes[core] = {}
    route = routes.get(address)
    if route is None:
        route = routes[address] = _Route(core, address)
    route.send(msg, future)


def _submit(core, address, msg, future):
    """Send an actor request from any thread; requests keep their order
    (``run_sync_soon`` runs callbacks in the order they were queued)."""
    try:
        core._in_loop(partial(_send, core, address, msg, future))
    except trio.RunFinishedError:
        future._fail(TrioflowError("the client closed"))


# ----------------------------------------------------------------------- worker side

class _Calls:
    """One actor's calls waiting on its worker, in arrival order."""

    __slots__ = ("key", "instance", "items", "running")

    def __init__(self, key, instance):
        self.key = key
        self.instance = instance
        self.items: deque = deque()
        self.running = False


class _Pending:
    """A call's reply, set from a task thread or the loop."""

    __slots__ = ("event", "reply")

    def __init__(self):
        self.event = trio.Event()
        self.reply = None

    def set(self, reply):
        self.reply = reply
        self.event.set()

    async def wait(self):
        await self.event.wait()
        return self.reply


class ActorWorkerExtension(WorkerExtension):
    """Runs actor calls on the worker that holds the actors."""

    name = "actors"

    def __init__(self, worker):
        super().__init__(worker)
        self.handlers = {"actor-call": self._call, "actor-getattr": self._getattr}
        self._calls: dict = {}

    def _queue(self, key) -> _Calls:
        instance = self.worker.actors.get(key)
        if instance is None:
            raise ActorLostError(
                f"worker {self.worker.address} does not hold actor {key!r}: it was released "
                "(no future or gathered proxy refers to it any more)")
        calls = self._calls.get(key)
        if calls is None or calls.instance is not instance:
            calls = self._calls[key] = _Calls(key, instance)
        return calls

    def _enqueue(self, kind, msg, inproc):
        # called as each message arrives, so calls queue in the order they were sent
        calls = self._queue(msg["key"])
        pending = _Pending()
        calls.items.append((kind, msg, inproc, pending))
        if not calls.running:
            calls.running = True
            self.worker.nursery.start_soon(self._drain, calls)
        return _unwrap(pending)

    def _call(self, msg, inproc):
        return self._enqueue("call", msg, inproc)

    def _getattr(self, msg, inproc):
        return self._enqueue("getattr", msg, inproc)

    async def _drain(self, calls: _Calls):
        """Run the queued calls of one actor, one at a time (async methods are
        started in order and then run on their own)."""
        try:
            while calls.items:
                kind, msg, inproc, pending = calls.items.popleft()
                if kind == "getattr":
                    pending.set(_attribute_reply(calls.instance, msg, inproc))
                    continue
                try:
                    method = getattr(calls.instance, msg["method"])
                except Exception as exc:
                    pending.set(("error", exc))
                    continue
                if inspect.iscoroutinefunction(method):
                    self.worker.nursery.start_soon(self._run_async, calls.key, method, msg,
                                                   inproc, pending)
                    continue
                # the sync calls queued behind it go to the thread in the same trip
                batch = [(method, msg, inproc, pending)]
                while calls.items and calls.items[0][0] == "call":
                    _, msg, inproc, pending = calls.items[0]
                    try:
                        method = getattr(calls.instance, msg["method"])
                    except Exception:
                        break
                    if inspect.iscoroutinefunction(method):
                        break
                    calls.items.popleft()
                    batch.append((method, msg, inproc, pending))
                await self.worker._threads.run(partial(_run_calls, self.worker, calls.key, batch))
        except BaseException as exc:
            error = exc if isinstance(exc, Exception) else TrioflowError(
                f"worker {self.worker.address} is closing")
            if isinstance(exc, Exception):
                logger.exception("actor %r on %s failed to run its calls", calls.key,
                                 self.worker.address)
            for *_, pending in calls.items:
                pending.set(("error", error))
            calls.items.clear()
            if not isinstance(exc, Exception):
                raise
        finally:
            calls.running = False
            if not calls.items and self._calls.get(calls.key) is calls:
                del self._calls[calls.key]

    async def _run_async(self, key, method, msg, inproc, pending):
        from trioflow.server.asyncio_bridge import run_coroutine
        from trioflow.server.context import TaskContext, _task_var, set_async_task
        from trioflow.server.worker import Execution
        if self.worker.client is None:
            await self.worker.get_client_async()  # so get_client() works inside the method
        token = set_async_task(TaskContext(self.worker, key, Execution(key, True)))
        try:
            args, kwargs = msg["args"] if inproc else deserialize(msg["args"])
            value = await run_coroutine(method(*args, **kwargs))
            pending.set(("ok", value if inproc else _serialize_result(value, key, msg)))
        except Exception as exc:
            pending.set(("error", exc))
        finally:
            _task_var.reset(token)


async def _unwrap(pending: _Pending):
    status, value = await pending.wait()
    if status == "error":
        raise value
    return value


def _serialize_result(value, key, msg):
    try:
        return serialize(value)
    except Exception as exc:
        raise SerializationError(f"cannot pickle what {msg['method']!r} of actor {key!r} "
                                 f"returned ({type(value).__name__}): {exc}") from exc


def _attribute_reply(instance, msg, inproc):
    try:
        value = getattr(instance, msg["attribute"])
        if not inproc:
            value = serialize(value)
        return ("ok", value)
    except Exception as exc:
        return ("error", exc)


def _run_calls(worker, key, batch):
    """In a task thread: run sync calls of one actor in order, handing each
    reply to the loop as soon as it is ready."""
    from trioflow.server.context import TaskContext, set_thread_task
    from trioflow.server.worker import Execution
    set_thread_task(TaskContext(worker, key, Execution(key, False)))
    token = worker.trio_token
    try:
        for method, msg, inproc, pending in batch:
            try:
                args, kwargs = msg["args"] if inproc else deserialize(msg["args"])
                value = method(*args, **kwargs)
                outcome = ("ok", value if inproc else _serialize_result(value, key, msg))
            except BaseException as exc:  # noqa: B036 - the caller gets it, the thread goes on
                outcome = ("error", exc if isinstance(exc, Exception) else
                           TrioflowError(f"{type(exc).__name__} in {msg['method']!r}: {exc}"))
            try:
                token.run_sync_soon(pending.set, outcome)
            except trio.RunFinishedError:
                return None
    finally:
        set_thread_task(None)
    return None
