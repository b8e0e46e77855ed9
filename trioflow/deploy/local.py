"""LocalCluster: a scheduler and workers on this machine.

``processes=True`` (the default) runs each worker in its own process under a
nanny and the scheduler on ws://127.0.0.1; ``processes=False`` runs the
workers inside this process, connected over inproc://.  Either way the
servers live in the shared loop thread, in one nursery that ``close()``
waits for.
"""
from __future__ import annotations

import logging
import math
import os
from contextlib import asynccontextmanager

import trio

from trioflow import extensions
from trioflow.server.background import BackgroundContext
from trioflow.comm.inproc import new_address
from trioflow.config import worker_resources
from trioflow.comm.tokens import new_token
from trioflow.server.nanny import Nanny
from trioflow.server.scheduler import Scheduler
from trioflow.server.worker import Worker
from trioflow.utils import (
    dashboard_link, default_dashboard_address, memory_limit_bytes, parse_bytes)

# paid at import, as the rest of the cluster's code is, not in LocalCluster()
extensions.preload()

logger = logging.getLogger("trioflow.deploy")

_DEFAULT = object()  # dashboard_address not given: see default_dashboard_address


def _defaults(n_workers, threads_per_worker, processes):
    cores = os.cpu_count() or 1
    if n_workers is None and threads_per_worker is None:
        if processes:
            n_workers = max(1, min(cores, 4))
            threads_per_worker = max(1, cores // n_workers)
        else:
            n_workers, threads_per_worker = 1, cores
    elif n_workers is None:
        n_workers = max(1, cores // threads_per_worker)
    elif threads_per_worker is None:
        threads_per_worker = max(1, cores // max(n_workers, 1))
    return int(n_workers), int(threads_per_worker)


class LocalCluster:
    """Start a scheduler and ``n_workers`` workers with ``threads_per_worker``
    threads each.  Accepts dask's keyword arguments.  The scheduler serves the
    dashboard on ``dashboard_address`` (``":8787"`` by default, a free port
    if that one is taken; None or False: none); ``worker_dashboard_address``
    gives each worker a /metrics endpoint (``":0"``: any free port).
    ``silence_logs`` and ``interface`` are accepted and unused.  The scheduler
    and workers require a token made for this cluster (``token=`` gives one,
    ``token=False`` turns it off); ``Client(cluster)`` uses it, and a client
    of the same user on this machine finds it for ``cluster.scheduler_address``.
    Use as a context manager or call ``close()``."""

    def __init__(self, n_workers=None, threads_per_worker=None, processes=True,
                 memory_limit="auto", dashboard_address=_DEFAULT, scheduler_port=0,
                 host="127.0.0.1", asynchronous=False, name=None, silence_logs=None,
                 resources=None, protocol=None, validate=None, nthreads=None,
                 worker_dashboard_address=None, interface=None, local_directory=None,
                 token=None, security=None, allowed_failures=None, **kwargs):
        if kwargs:
            raise TypeError(f"LocalCluster() got unexpected keyword argument(s): {sorted(kwargs)}")
        if security is True:
            from trioflow.security import Security
            security = Security.temporary()
        self.security = security or None
        if nthreads is not None and threads_per_worker is None:
            threads_per_worker = nthreads
        self.n_workers, self.threads_per_worker = _defaults(n_workers, threads_per_worker,
                                                             processes)
        self.processes = bool(processes)
        self.memory_limit = memory_limit_bytes(memory_limit, self.n_workers)
        self.name = name
        # read here: worker processes do not see this process's dask.config.set
        self.resources = worker_resources(resources)
        self.validate = validate
        self.allowed_failures = allowed_failures  # None: dask config, else 3
        # its own processes prove a token made for this cluster (token=False: none)
        self.token = None if token is False else (token or new_token())
        self.dashboard_address = (default_dashboard_address() if dashboard_address is _DEFAULT
                                  else dashboard_address)
        self.worker_dashboard_address = worker_dashboard_address
        if protocol in ("inproc", "inproc://") or (protocol is None and not processes):
            # in one process nothing crosses a socket: security= has nothing to encrypt
            self._scheduler_listen = new_address()
        else:
            scheme = (protocol or "").replace("://", "") or (
                "wss" if self.security is not None else "ws")
            # "tcp"/"tls" are spellings of ws/wss: the address parser maps them
            self._scheduler_listen = f"{scheme}://{host}:{scheduler_port or 0}"
        self.host = host
        self.scheduler: Scheduler | None = None
        self.workers: dict = {}
        self._worker_stops: dict = {}  # name -> trio.Event that retires that worker
        self._next_name = self.n_workers
        self._scaling = trio.Lock()
        self._adaptive = None
        self.status = "created"
        self.asynchronous = bool(asynchronous)
        self._host = BackgroundContext(self._running)
        if not self.asynchronous:
            self._host.start_blocking()
            self.status = "running"

    async def _start_async(self):
        if self.status == "created":
            await self._host.start_async()
            self.status = "running"
        return self

    def __await__(self):
        return self._start_async().__await__()

    async def __aenter__(self):
        return await self._start_async()

    async def __aexit__(self, *exc_info):
        await self._close_async()

    @asynccontextmanager
    async def _running(self):
        async with Scheduler(address=self._scheduler_listen, token=self.token,
                             security=self.security, validate=self.validate,
                             allowed_failures=self.allowed_failures,
                             dashboard_address=self.dashboard_address) as scheduler:
            self.scheduler = scheduler
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                stop = trio.Event()
                self._stop = stop
                nursery.start_soon(self._close_when_terminated, scheduler)
                try:
                    async with trio.open_nursery() as starting:
                        for i in range(self.n_workers):
                            starting.start_soon(self._start_worker, i)
                    yield self
                finally:
                    stop.set()

    async def _close_when_terminated(self, scheduler):
        """Until the cluster stops: if a client's shutdown() asks the scheduler
        to close, close the whole cluster."""
        async with trio.open_nursery() as watchers:
            async def on_terminate():
                await scheduler.terminated()
                self._host.request_stop()

            watchers.start_soon(on_terminate)
            await self._stop.wait()
            watchers.cancel_scope.cancel()

    async def _start_worker(self, i: int):
        await self._nursery.start(self._hold_worker, i)

    async def _hold_worker(self, i, task_status=trio.TASK_STATUS_IGNORED):
        name = i
        retire = self._worker_stops[name] = trio.Event()
        if self.processes:
            server = Nanny(self.scheduler.address, nthreads=self.threads_per_worker, name=name,
                           memory_limit=self.memory_limit, resources=self.resources,
                           host=self.host, token=self.token, security=self.security,
                           dashboard_address=self.worker_dashboard_address)
        else:
            server = Worker(self.scheduler.address, nthreads=self.threads_per_worker, name=name,
                            memory_limit=self.memory_limit, resources=self.resources,
                            token=self.token, validate=self.validate, security=self.security,
                            dashboard_address=self.worker_dashboard_address)
        started = False
        try:
            async with server:
                self.workers[name] = server
                started = True
                task_status.started()
                await _first(self._stop, retire)
        except Exception:
            if not started:
                raise
            # a worker whose machinery failed closed itself; the scheduler has
            # already rescheduled its work: the rest of the cluster carries on
            logger.exception("worker %r of the local cluster failed and was closed", name)
        finally:
            self.workers.pop(name, None)
            self._worker_stops.pop(name, None)

    # ---------------------------------------------------------------- scaling

    def scale(self, n=None, memory=None, cores=None):
        """Run ``n`` workers: start new ones, or retire the newest idle ones
        after moving the data only they hold to the others (as dask's
        ``retire_workers``).  ``cores=`` or ``memory=`` (bytes or "4GB") ask
        for that many threads or that much memory instead.  A blocking
        cluster returns when done; an asynchronous one starts at once and
        returns an awaitable that waits for it."""
        return self._in_loop(self._scale_to, self._target(n, memory, cores))

    def _target(self, n, memory, cores) -> int:
        if cores is not None:
            n = math.ceil(cores / self.threads_per_worker)
        elif memory is not None:
            if not self.memory_limit:
                raise ValueError("scale(memory=) needs workers with a memory_limit")
            wanted = memory if isinstance(memory, (int, float)) else parse_bytes(memory)
            n = math.ceil(wanted / self.memory_limit)
        if n is None:
            n = 0
        if isinstance(n, bool) or not isinstance(n, (int, float)) or n < 0:
            raise ValueError(f"scale() takes a number of workers >= 0, not {n!r}")
        return int(n)

    def _in_loop(self, async_fn, *args):
        if self.status != "running":
            raise RuntimeError(f"{self!r} is {self.status}: it cannot change")
        if not self.asynchronous:
            return self._host.call_blocking(async_fn, *args)
        return _Started(self._host, self._nursery, async_fn, args)

    async def _scale_to(self, n: int):
        async with self._scaling:
            have = len(self.workers)
            if n > have:
                async with trio.open_nursery() as starting:
                    for _ in range(n - have):
                        name, self._next_name = self._next_name, self._next_name + 1
                        starting.start_soon(self._start_worker, name)
            elif n < have:
                await self._retire(self._victims(have - n))

    def _victims(self, count: int) -> list:
        """The names of ``count`` workers to retire: idle ones first, newest first."""
        processing = {a: len(ws.processing) for a, ws in self.scheduler.state.workers.items()}
        return sorted(self.workers, key=lambda name: (
            processing.get(self.workers[name].address, 0), -_order(name)))[:count]

    async def _retire(self, names: list):
        addresses = [self.workers[name].address for name in names if name in self.workers]
        if len(addresses) < len(self.scheduler.state.workers):  # else nowhere to put data
            await self.scheduler._retire(None, {"workers": addresses, "close": False})
        for name in names:
            stop = self._worker_stops.get(name)
            if stop is not None:
                stop.set()
        with trio.move_on_after(60):
            while any(name in self.workers for name in names):
                await trio.sleep(0.02)

    def adapt(self, minimum=0, maximum=math.inf, minimum_cores=None, maximum_cores=None,
              interval="1s", wait_count=3, target_duration="5s", **kwargs):
        """Scale between ``minimum`` and ``maximum`` workers with the load:
        up at once when tasks wait for threads, down (retiring idle workers,
        their data moved) after ``wait_count`` looks in a row, every
        ``interval``, found fewer needed.  Replaces an earlier ``adapt``;
        ``.stop()`` on what it returns stops adapting.  ``target_duration``
        is accepted (trioflow counts runnable tasks, not their durations)."""
        from trioflow.deploy.adaptive import Adaptive
        if self._adaptive is not None:
            self._adaptive.stop()
        self._adaptive = Adaptive(self, minimum, maximum, minimum_cores, maximum_cores,
                                  interval, wait_count)
        self._adaptive.start()
        return self._adaptive

    # ---------------------------------------------------------------- logs

    def get_logs(self, cluster=True, scheduler=True, workers=True):
        """Recent log lines: ``{"Cluster": text, "Scheduler": text, worker
        address: text}`` (what dask's ``Cluster.get_logs`` gives).
        ``workers`` may list the addresses wanted.  An asynchronous cluster
        returns an awaitable."""
        if not self.asynchronous:
            return self._host.call_blocking(self._get_logs, cluster, scheduler, workers)
        return self._host.run(self._get_logs, cluster, scheduler, workers)

    async def _get_logs(self, cluster, scheduler, workers):
        from trioflow.protocol.serialize import deserialize, serialize
        from trioflow.server.logs import recent
        logs = {}
        if cluster:
            logs["Cluster"] = _text(recent(None, ("trioflow.deploy", "trioflow.nanny")))
        if scheduler:
            logs["Scheduler"] = _text(recent(None, ("trioflow.scheduler", "trioflow.comm")))
        if workers:
            addresses = (list(self.scheduler.state.workers) if workers is True
                         else [workers] if isinstance(workers, str) else list(workers))
            replies = await self.scheduler._broadcast(None, {
                "workers": addresses, "function": serialize(_worker_logs),
                "args": serialize(()), "kwargs": serialize({})})
            for address, reply in replies.items():
                found = deserialize(reply["result"]) if "result" in reply else [
                    ("ERROR", reply.get("error") or "no answer")]
                logs[address] = _text(found)
        return logs

    @property
    def scheduler_address(self) -> str:
        return self.scheduler.address

    @property
    def dashboard_link(self):
        """The URL of the scheduler's dashboard (``TRIOFLOW_DASHBOARD_LINK``
        templates it), or None when it serves none."""
        port = self.scheduler.services.get("dashboard") if self.scheduler else None
        if port is None:
            return None
        return dashboard_link(self.scheduler.dashboard_host, port)

    def __repr__(self):
        return (f"LocalCluster({self.scheduler_address!r}, workers={len(self.workers)}, "
                f"threads={len(self.workers) * self.threads_per_worker}, "
                f"processes={self.processes})")

    def __enter__(self):
        if self.asynchronous:
            raise TypeError("use 'async with' for an asynchronous LocalCluster")
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self, timeout=None):
        """Stop the workers (and their processes) and the scheduler; returns
        when all are gone.  An asynchronous cluster returns an awaitable."""
        if self.asynchronous:
            return self._close_async()
        if self.status != "running":
            self.status = "closed"
            return
        self.status = "closing"
        try:
            self._host.stop_blocking()
        finally:
            self.status = "closed"

    async def _close_async(self):
        if self.status != "running":
            self.status = "closed"
            return
        self.status = "closing"
        try:
            await self._host.stop_async()
        finally:
            self.status = "closed"

    def __del__(self):
        if getattr(self, "status", "closed") == "running" and not self.asynchronous:
            try:
                self.close()
            except Exception:
                pass


async def _first(*events) -> None:
    """Return once any of ``events`` is set."""
    async with trio.open_nursery() as nursery:
        async def wait(event):
            await event.wait()
            nursery.cancel_scope.cancel()
        for event in events:
            nursery.start_soon(wait, event)


def _order(name) -> float:
    return name if isinstance(name, (int, float)) else -1


def _text(records) -> str:
    return "\n".join(line for _level, line in records)


def _worker_logs(dask_worker=None):
    from trioflow.server.logs import recent
    return recent(None, ("trioflow.worker", "trioflow.comm"))


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
