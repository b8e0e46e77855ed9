"""SpecCluster: a cluster described by specs, the interface dask's deployers
(dask-jobqueue, dask-kubernetes, SSH) are written against.

A spec is ``{"cls": class or "module.Class", "options": {...}}``.  The
scheduler's is called ``cls(**options)``; each worker's
``cls(scheduler_address, name=name, **options)``; then the object is
awaited (that starts it), its ``address`` read, and at the end its
``close()`` awaited.  Two kinds of class fit:

- trioflow's own servers (``Scheduler``, ``Worker``, ``Nanny``), trio async
  context managers: the cluster holds each open in its nursery;
- a ``ProcessInterface`` subclass, whose ``start()`` asks something else
  (a batch queue, Kubernetes, SSH, a subprocess) for the process and whose
  ``close()`` takes it away.  Deployers are written with asyncio, as for
  dask: their coroutines run on trioflow's asyncio side loop
  (``server/asyncio_bridge.run_coroutine``), trio code on trio.

The cluster talks to its scheduler directly when it runs in this process,
otherwise through a client connection, to retire workers (their data moved
first) and to ask ``adaptive_target()`` for ``adapt()``.
"""
from __future__ import annotations

import copy
import enum
import importlib
import inspect
import logging
import math
import uuid
import weakref
from contextlib import asynccontextmanager

import trio

from trioflow.comm import connect
from trioflow.comm.connection import Connection
from trioflow.comm.tokens import new_token
from trioflow.deploy.compat import ClusterCompatMixin
from trioflow.server.asyncio_bridge import run_coroutine
from trioflow.server.background import BackgroundContext, current_library
from trioflow.utils import parse_bytes

logger = logging.getLogger("trioflow.deploy")


class Status(enum.Enum):
    """dask's ``distributed.core.Status`` values that deployers set and read."""
    undefined = "undefined"
    created = "created"
    init = "init"
    starting = "starting"
    running = "running"
    paused = "paused"
    stopping = "stopping"
    stopped = "stopped"
    closing = "closing"
    closing_gracefully = "closing_gracefully"
    closed = "closed"
    failed = "failed"
    dont_reply = "dont_reply"

    def __eq__(self, other):  # "running" == Status.running, as dask's
        if isinstance(other, str):
            return self.value == other
        return super().__eq__(other)

    __hash__ = enum.Enum.__hash__


class ProcessInterface:
    """One scheduler or worker process that a deployer starts somewhere.

    Subclass it and override ``start()`` (make the process exist; for a
    scheduler, set ``self.address`` before returning) and ``close()``
    (take it away, forcefully: the cluster has already retired the worker
    gracefully); call ``super().start()`` / ``super().close()`` at their
    end, as for dask."""

    def __init__(self, scheduler=None, name=None):
        self.address = getattr(self, "address", None)
        self.external_address = None
        self.status = Status.created
        self._waiting: list = []

    def __await__(self):
        async def start_once():
            if self.status == Status.created:
                await self.start()
                if self.status == Status.created:  # a start() that forgot super()
                    self.status = Status.running
            return self
        return start_once().__await__()

    async def start(self):
        """Ask for the process.  Workers may return before it runs; a
        scheduler's ``address`` must be known on return."""
        self.status = Status.running

    async def close(self):
        """Stop the process."""
        self.status = Status.closed
        for event in self._waiting:
            event.set()
        self._waiting.clear()

    async def finished(self):
        """Wait until ``close()`` has run."""
        if self.status == Status.closed:
            return
        if current_library() == "trio":
            event = trio.Event()
        else:
            import asyncio
            event = asyncio.Event()
        self._waiting.append(event)
        await event.wait()

    def __repr__(self):
        return f"<{type(self).__name__}: status={self.status.name}>"

    async def __aenter__(self):
        await self
        return self

    async def __aexit__(self, *exc_info):
        await self.close()


class _Hosted(ProcessInterface):
    """A trioflow server held open in the cluster's nursery."""

    def __init__(self, server, nursery, on_exit=None):
        super().__init__()
        self.server = server
        self._nursery = nursery
        self._on_exit = on_exit
        self._stop = trio.Event()
        self._done = trio.Event()

    async def start(self):
        await self._nursery.start(self._hold)
        self.address = self.server.address
        await super().start()

    async def _hold(self, task_status=trio.TASK_STATUS_IGNORED):
        started = False
        try:
            async with self.server:
                started = True
                task_status.started()
                async with trio.open_nursery() as watch:
                    async def on_finished():
                        await self.server.finished()
                        watch.cancel_scope.cancel()
                    if hasattr(self.server, "finished"):
                        watch.start_soon(on_finished)
                    await self._stop.wait()
                    watch.cancel_scope.cancel()
        except Exception:
            if not started:
                raise
            # a server whose machinery failed closed itself; the scheduler has
            # already rescheduled its work: the rest of the cluster carries on
            logger.exception("%r of the cluster failed and was closed", self.server)
        finally:
            self._done.set()
            self.status = Status.closed
            if self._on_exit is not None and not self._stop.is_set():
                self._on_exit(self)

    async def close(self):
        self._stop.set()
        with trio.CancelScope(shield=True):
            await self._done.wait()
        await super().close()


def _is_trio_server(cls) -> bool:
    return (isinstance(cls, type) and hasattr(cls, "__aenter__")
            and not issubclass(cls, ProcessInterface))


def _resolve(cls):
    if isinstance(cls, str):
        module, _, name = cls.rpartition(".")
        if not module:
            raise ValueError(f"a spec's cls must be a class or 'module.Class', not {cls!r}")
        return getattr(importlib.import_module(module), name)
    return cls


def _check_spec(spec, what):
    if not isinstance(spec, dict) or "cls" not in spec:
        raise TypeError(f"{what} must be a spec {{'cls': ..., 'options': {{...}}}}, not {spec!r}")
    unknown = set(spec) - {"cls", "options", "group"}
    if unknown:
        raise TypeError(f"{what} has unknown field(s) {sorted(unknown)}; a spec has "
                        "'cls' and 'options'")
    if "group" in spec:
        raise NotImplementedError(f"{what}: worker groups (a spec's 'group') are not supported")
    return spec


class SpecCluster(ClusterCompatMixin):
    """A cluster made from specs (see the module docstring).

    ``scheduler``: the scheduler's spec; ``workers``: ``{name: spec}`` to
    start with; ``worker``: the spec ``scale()`` starts new workers from.
    A trioflow ``Scheduler`` spec without a ``token`` option gets a new one
    (``token=False``: none), given to every trioflow worker spec too;
    ``Client(cluster)`` uses it.  Use as a (async) context manager, or
    ``close()``."""

    _name = "SpecCluster"

    def __init__(self, workers=None, scheduler=None, worker=None, asynchronous=False,
                 loop=None, security=None, silence_logs=False, name=None,
                 shutdown_on_close=True, scheduler_sync_interval=1, token=None):
        if scheduler is None:
            raise TypeError("SpecCluster() needs scheduler={'cls': ..., 'options': {...}}")
        self.scheduler_spec = copy.copy(_check_spec(scheduler, "scheduler="))
        self.worker_spec = {name: _check_spec(spec, f"workers[{name!r}]")
                            for name, spec in (workers or {}).items()}
        self._new_spec = copy.copy(_check_spec(worker, "worker=")) if worker is not None else None
        self.security = security or getattr(self, "security", None)
        self.name = name
        self.shutdown_on_close = shutdown_on_close
        # a scheduler of ours requires a token made for this cluster (token=False: none)
        self._token_given = token
        self.token = None if token is False else (token or new_token())
        self.scheduler = None
        self.workers: dict = {}
        self._i = 0
        self._correcting = trio.Lock()
        self._adaptive = None
        self._remote = None  # the connection to a scheduler not in this process
        self._nursery = None
        self.status = Status.created
        self.asynchronous = bool(asynchronous)
        self._host = BackgroundContext(self._running)
        if not self.asynchronous:
            self._host.start_blocking()
            self.status = Status.running

    # ---------------------------------------------------------------- specs

    @property
    def new_spec(self):
        """The spec ``scale()`` starts new workers from (``worker=``)."""
        return self._new_spec

    @new_spec.setter
    def new_spec(self, spec):
        self._new_spec = spec

    def _new_worker_name(self, i):
        return i

    def new_worker_spec(self) -> dict:
        """``{name: spec}`` for one more worker."""
        if self.new_spec is None:
            raise ValueError(f"{type(self).__name__} was given no worker= spec to scale with")
        name = self._new_worker_name(self._i)
        while name in self.worker_spec:
            self._i += 1
            name = self._new_worker_name(self._i)
        return {name: self.new_spec}

    @property
    def plan(self) -> set:
        """The names of the workers asked for."""
        return set(self.worker_spec)

    @property
    def requested(self) -> set:
        """Those asked for whose process has been started."""
        return {name for name in self.workers if name in self.worker_spec}

    @property
    def observed(self) -> set:
        """The names of the workers the scheduler sees."""
        return {w.get("name") for w in self.scheduler_info.get("workers", {}).values()}

    @property
    def scheduler_info(self) -> dict:
        """The scheduler's identity (``workers``: address -> name, nthreads...):
        live for a scheduler in this process, else as of the last look."""
        local = self._local_scheduler
        if local is not None:
            return local.identity()
        return self._last_identity

    _last_identity: dict = {}

    @property
    def _local_scheduler(self):
        from trioflow.server.scheduler import Scheduler
        return self.scheduler if isinstance(self.scheduler, Scheduler) else None

    def _options(self, spec, **given) -> tuple:
        """``(cls, options)``, with what the cluster gives its own servers."""
        cls = _resolve(spec["cls"])
        options = dict(spec.get("options") or {})
        if _is_trio_server(cls):
            options.setdefault("token", self.token)
            if self.security is not None:
                options.setdefault("security", self.security)
        for key, value in given.items():
            options.setdefault(key, value)
        return cls, options

    # ---------------------------------------------------------------- running

    async def _drive(self, obj, method_name):
        """``await obj`` (``"start"``) or ``await obj.close()``, on the loop the
        deployer's code needs: trio's, or asyncio's (the side loop of
        ``run_coroutine``) for the asyncio code dask's deployers are."""
        if isinstance(obj, _Hosted):
            return await (obj if method_name == "start" else obj.close())
        if method_name == "close":
            return await run_coroutine(obj.close())
        if isinstance(obj, ProcessInterface):
            if obj.status == Status.created:
                # the deployer's own coroutine, so the loop it picks is its own
                await run_coroutine(obj.start())
                if obj.status == Status.created:  # a start() that forgot super()
                    obj.status = Status.running
            return obj
        return await run_coroutine(_awaited(obj))

    async def _open(self, spec, *args, **given):
        cls, options = self._options(spec, **given)
        if _is_trio_server(cls):
            obj = _Hosted(cls(*args, **options), self._nursery, self._hosted_exited)
        else:
            obj = cls(*args, **options)
        await self._drive(obj, "start")
        return obj

    def _hosted_exited(self, obj):
        """A hosted worker that closed by itself (retired by a client, or
        failed) leaves the cluster's plan."""
        for name, held in list(self._held.items()):
            if held is obj:
                self._held.pop(name, None)
                self.workers.pop(name, None)
                self.worker_spec.pop(name, None)

    @asynccontextmanager
    async def _running(self):
        try:
            async with self._running_nursery() as cluster:
                yield cluster
        except BaseExceptionGroup as group:
            raise _single(group) from None

    @asynccontextmanager
    async def _running_nursery(self):
        self._held: dict = {}  # name -> what close() is called on
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            stop = trio.Event()
            self._stop = stop
            scheduler = None
            try:
                scheduler = await self._open(self.scheduler_spec)
                self.scheduler = getattr(scheduler, "server", scheduler)
                self._scheduler_process = scheduler
                if self._local_scheduler is None:
                    await self._connect_remote(scheduler)
                else:
                    nursery.start_soon(self._close_when_terminated)
                await self._correct_state()
                yield self
            finally:
                stop.set()
                with trio.CancelScope(shield=True):
                    await self._shut_down(scheduler)
                nursery.cancel_scope.cancel()

    async def _shut_down(self, scheduler):
        if self._adaptive is not None:
            self._adaptive.stop_now()
        async with trio.open_nursery() as closing:
            for name in list(self._held):
                closing.start_soon(self._close_worker, name)
        if self._remote is not None:
            self._remote.close("cluster closed")
            with trio.move_on_after(2):
                await self._remote.wait_closed()
        if scheduler is not None:
            await self._drive(scheduler, "close")

    async def _connect_remote(self, scheduler):
        given = self._token_given if isinstance(self._token_given, str) else None
        token = getattr(scheduler, "token", None) or given
        self.security = getattr(scheduler, "security", None) or self.security
        # a same-machine loopback scheduler's token is found in its runtime file
        comm = await connect(self.scheduler_address, self._nursery, token=token,
                             security=self.security,
                             info={"role": "client", "id": f"cluster-{uuid.uuid4().hex[:12]}",
                                   "name": type(self).__name__})
        self.token = token or comm.token
        self._remote = Connection(comm)
        self._nursery.start_soon(self._remote.run)
        self._last_identity = await self._ask({"op": "identity"})

    async def _close_when_terminated(self):
        """If a client's shutdown() asks the scheduler to close, close the cluster."""
        async with trio.open_nursery() as watchers:
            async def on_terminate():
                await self.scheduler.terminated()
                self._host.request_stop()

            watchers.start_soon(on_terminate)
            await self._stop.wait()
            watchers.cancel_scope.cancel()

    async def _ask(self, msg: dict):
        """A request to the scheduler: in this process directly, else over the wire."""
        local = self._local_scheduler
        if local is None:
            return await self._remote.request(msg)
        reply = local._request_handler(msg["op"])(None, msg)
        if inspect.isawaitable(reply):
            reply = await reply
        return reply

    async def _correct_state(self):
        """Start the workers in the plan that are not running; retire (data
        moved first) and close those running that left it."""
        async with self._correcting:
            to_close = [name for name in self._held if name not in self.worker_spec]
            if to_close:
                info = self.scheduler_info.get("workers", {})
                # a worker process reports its name as text
                by_name = {str(w.get("name")): a for a, w in info.items()}
                addresses = [by_name[str(n)] for n in to_close if str(n) in by_name]
                if addresses and len(addresses) < len(info):  # else nowhere to put data
                    await self._ask({"op": "retire", "workers": addresses, "close": False})
                async with trio.open_nursery() as closing:
                    for name in to_close:
                        closing.start_soon(self._close_worker, name)
            to_open = [name for name in self.worker_spec if name not in self._held]
            if to_open:
                async with trio.open_nursery() as starting:
                    for name in to_open:
                        starting.start_soon(self._open_worker, name)
            if self._remote is not None:
                self._last_identity = await self._ask({"op": "identity"})

    async def _open_worker(self, name):
        address = getattr(self._scheduler_process, "contact_address", None) or self.scheduler_address
        obj = await self._open(self.worker_spec[name], address, name=name)
        if name not in self.worker_spec:  # scaled away while it started
            await self._drive(obj, "close")
            return
        self._held[name] = obj
        self.workers[name] = getattr(obj, "server", obj)
        try:
            obj._cluster = weakref.ref(self)
        except AttributeError:
            pass

    async def _close_worker(self, name):
        obj = self._held.pop(name, None)
        self.workers.pop(name, None)
        if obj is not None:
            try:
                await self._drive(obj, "close")
            except Exception:
                logger.exception("closing worker %r failed", name)

    # ---------------------------------------------------------------- scaling

    def _threads_per_worker(self) -> int:
        options = (self.new_spec or {}).get("options") or {}
        nthreads = options.get("nthreads") or options.get("ncores")
        if not nthreads:
            raise ValueError("to use scale(cores=...) the worker spec must have an 'nthreads' "
                             "option")
        return int(nthreads)

    def _memory_per_worker(self) -> int:
        options = (self.new_spec or {}).get("options") or {}
        limit = options.get("memory_limit")
        if not limit:
            raise ValueError("to use scale(memory=...) the worker spec must have a "
                             "'memory_limit' option")
        return parse_bytes(limit)

    def _target(self, n, memory, cores) -> int:
        n = 0 if n is None else n
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
            raise ValueError(f"scale() takes a number of workers >= 0, not {n!r}")
        if memory is not None:
            wanted = memory if isinstance(memory, (int, float)) else parse_bytes(memory)
            n = max(n, math.ceil(wanted / self._memory_per_worker()))
        if cores is not None:
            n = max(n, math.ceil(cores / self._threads_per_worker()))
        return int(n)

    def scale(self, n=0, memory=None, cores=None):
        """Run ``n`` workers (or enough for ``memory=`` bytes / ``cores=``
        threads): start new ones from the ``worker`` spec, or retire the
        surplus (not yet started, then idle, newest first) after moving the
        data only they hold.  A blocking cluster returns when done; an
        asynchronous one starts at once and returns an awaitable."""
        return self._in_loop(self._scale_to, self._target(n, memory, cores))

    async def _scale_to(self, n: int):
        if len(self.worker_spec) > n:
            for name in self._surplus(len(self.worker_spec) - n):
                del self.worker_spec[name]
        while len(self.worker_spec) < n and self.status not in (Status.closing, Status.closed):
            self.worker_spec.update(self.new_worker_spec())
        await self._correct_state()

    def _surplus(self, count: int) -> list:
        """Which ``count`` workers to drop: not started yet, then idle, newest first."""
        info = self.scheduler_info.get("workers", {})
        processing = {str(w.get("name")): w.get("processing", 0) for w in info.values()}
        return sorted(self.worker_spec, key=lambda name: (
            str(name) in processing, processing.get(str(name), 0), -_order(name)))[:count]

    async def scale_up(self, n: int):
        """Grow to ``n`` workers (what ``Adaptive`` calls)."""
        await self._scale_to(max(n, len(self.worker_spec)))

    async def scale_down(self, workers):
        """Retire these workers (names or addresses), data moved first."""
        info = self.scheduler_info.get("workers", {})
        names = {str(info[w].get("name") if w in info else w) for w in workers}
        for name in [n for n in self.worker_spec if str(n) in names]:
            del self.worker_spec[name]
        await self._correct_state()

    def _in_loop(self, async_fn, *args):
        if self.status != Status.running:
            raise RuntimeError(f"{self!r} is {self.status.value}: it cannot change")
        if not self.asynchronous:
            return self._host.call_blocking(async_fn, *args)
        return _Started(self._host, self._nursery, async_fn, args)

    def adapt(self, minimum=0, maximum=math.inf, minimum_cores=None, maximum_cores=None,
              minimum_memory=None, maximum_memory=None, interval="1s", wait_count=3,
              target_duration="5s", Adaptive=None, **kwargs):
        """Follow the load between ``minimum`` and ``maximum`` workers, as the
        scheduler's ``adaptive_target()`` asks every ``interval``: the
        expected run time of the queued and running tasks over
        ``target_duration``.  Up at once; down after ``wait_count`` looks in
        a row named the same idle workers, which are retired with their data
        moved.  Replaces an earlier ``adapt``; ``.stop()`` on what it
        returns stops adapting."""
        if kwargs:
            raise TypeError(f"adapt() got unexpected keyword argument(s): {sorted(kwargs)}")
        if Adaptive is None:
            from trioflow.deploy.adaptive import Adaptive
        if self._adaptive is not None:
            self._adaptive.stop()
        self._adaptive = Adaptive(
            self, minimum=minimum, maximum=maximum, minimum_cores=minimum_cores,
            maximum_cores=maximum_cores, minimum_memory=minimum_memory,
            maximum_memory=maximum_memory, interval=interval, wait_count=wait_count,
            target_duration=target_duration)
        self._adaptive.start()
        return self._adaptive

    def wait_for_workers(self, n_workers=0, timeout=None):
        """Wait until the scheduler sees ``n_workers`` workers."""
        async def wait():
            with trio.fail_after(timeout if timeout is not None else math.inf):
                while True:
                    info = await self._ask({"op": "identity"})
                    self._last_identity = info
                    if len(info.get("workers", {})) >= n_workers:
                        return
                    await trio.sleep(0.05)
        if not self.asynchronous:
            return self._host.call_blocking(wait)
        return self._host.run(wait)

    # ---------------------------------------------------------------- lifetime

    @property
    def scheduler_address(self) -> str:
        scheduler = getattr(self, "_scheduler_process", None)
        if scheduler is None:
            return None
        return getattr(scheduler, "external_address", None) or scheduler.address

    @property
    def dashboard_link(self):
        """The URL of the scheduler's dashboard, or None when it serves none."""
        from trioflow.utils import dashboard_link
        local = self._local_scheduler
        if local is not None:
            port = local.services.get("dashboard")
            return None if port is None else dashboard_link(local.dashboard_host, port)
        info = self.scheduler_info
        port = info.get("services", {}).get("dashboard")
        return None if port is None else dashboard_link(info.get("dashboard_host"), port)

    # ---------------------------------------------------------------- client

    def get_client(self):
        """A client of this cluster, as dask's ``Cluster.get_client``: the
        current default client if it is connected to this cluster, else a
        new ``Client(self)``."""
        from trioflow.client.client import Client, default_client
        try:
            current = default_client()
        except ValueError:
            current = None
        if current is not None and getattr(current, "cluster", None) is self:
            return current
        return Client(self)

    def __repr__(self):
        return (f"{type(self).__name__}({self.scheduler_address!r}, "
                f"workers={len(self.workers)})")

    async def _start_async(self):
        if self.status == Status.created:
            await self._host.start_async()
            self.status = Status.running
        return self

    def __await__(self):
        return self._start_async().__await__()

    async def __aenter__(self):
        return await self._start_async()

    async def __aexit__(self, *exc_info):
        await self._close_async()

    def __enter__(self):
        if self.asynchronous:
            raise TypeError(f"use 'async with' for an asynchronous {type(self).__name__}")
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self, timeout=None):
        """Close the workers (retired, their processes stopped), then the
        scheduler; returns when all are gone.  An asynchronous cluster
        returns an awaitable."""
        if self.asynchronous:
            return self._close_async()
        if self.status != Status.running:
            self.status = Status.closed
            return
        self.status = Status.closing
        try:
            self._host.stop_blocking()
        finally:
            self.status = Status.closed

    async def _close_async(self):
        if self.status != Status.running:
            self.status = Status.closed
            return
        self.status = Status.closing
        try:
            await self._host.stop_async()
        finally:
            self.status = Status.closed

    def __del__(self):
        if getattr(self, "status", Status.closed) == Status.running and not self.asynchronous:
            try:
                self.close()
            except Exception:
                pass


async def _awaited(obj):
    return await obj


def _single(group: BaseExceptionGroup) -> BaseException:
    """The one error in ``group`` (through nested nurseries), else the group:
    a cluster that failed to start raises what failed, not a wrapper."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group


def _order(name) -> float:
    return name if isinstance(name, (int, float)) else -1


class _Started:
    """A change to an asynchronous cluster, started at once in its loop (as
    dask's, it happens whether or not it is awaited); awaiting it waits for
    it to finish, from trio or asyncio."""

    def __init__(self, host, nursery, async_fn, args):
        import concurrent.futures
        self._done = concurrent.futures.Future()
        self._event = None

        async def run():
            try:
                self._done.set_result(await async_fn(*args))
            except BaseException as exc:  # noqa: B036 - handed to whoever awaits
                self._done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                if self._event is not None:
                    self._event.set()

        # in the cluster's nursery: closing the cluster cancels it
        if host.mode == "trio":
            self._event = trio.Event()
            nursery.start_soon(run)
        else:
            host.loop.run_sync_soon(nursery.start_soon, run)

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self):
        if self._event is not None:
            await self._event.wait()
        else:
            import asyncio
            await asyncio.wrap_future(self._done)
        return self._done.result()
