"""LocalCluster: a scheduler and workers on this machine.

``processes=True`` (the default) runs each worker in its own process under a
nanny and the scheduler on ws://127.0.0.1; ``processes=False`` runs the
workers inside this process, connected over inproc://.  Either way the
servers live in the shared loop thread, in one nursery that ``close()``
waits for.
"""
from __future__ import annotations

import logging
import os
from contextlib import asynccontextmanager

import trio

from trioflow import extensions
from trioflow.server.background import BackgroundContext
from trioflow.comm.inproc import new_address
from trioflow.server.nanny import Nanny
from trioflow.server.scheduler import Scheduler
from trioflow.server.worker import Worker
from trioflow.utils import dashboard_link, default_dashboard_address, memory_limit_bytes

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
    ``silence_logs`` and ``interface`` are accepted and unused.  Use as a
    context manager or call ``close()``."""

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
        self.resources = resources
        self.validate = validate
        self.allowed_failures = allowed_failures  # None: dask config, else 3
        self.token = token
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
                await self._stop.wait()
        except Exception:
            if not started:
                raise
            # a worker whose machinery failed closed itself; the scheduler has
            # already rescheduled its work: the rest of the cluster carries on
            logger.exception("worker %r of the local cluster failed and was closed", name)
        finally:
            self.workers.pop(name, None)

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
