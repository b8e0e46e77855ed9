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
import operator
import os
from trioflow.comm.inproc import new_address
from trioflow.config import worker_resources
from trioflow.server.memory import memory_fractions
from trioflow.server.nanny import Nanny
from trioflow.server import extensions
from trioflow.server.scheduler import Scheduler
from trioflow.server.worker import Worker
from trioflow.deploy.spec import SpecCluster
from trioflow.utils import default_dashboard_address, memory_limit_bytes

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
    return _count("n_workers", n_workers, 0), _count("threads_per_worker", threads_per_worker, 1)


def _count(what, value, least) -> int:
    try:
        if isinstance(value, bool):
            raise TypeError
        count = operator.index(value)
    except TypeError:
        count = None
    if count is None or count < least:
        raise ValueError(f"LocalCluster({what}=) takes a count >= {least}, not {value!r}")
    return count


class LocalCluster(SpecCluster):
    """Start a scheduler and ``n_workers`` workers with ``threads_per_worker``
    threads each.  Accepts dask's keyword arguments.  The scheduler serves the
    dashboard on ``dashboard_address`` (``":8787"`` by default, a free port
    if that one is taken; None or False: none); ``worker_dashboard_address``
    gives each worker a /metrics endpoint (``":0"``: any free port).
    ``worker_class`` (a Worker or Nanny subclass) and ``scheduler_kwargs``
    (more options for the Scheduler) are dask's.  ``silence_logs`` and
    ``interface`` are accepted and unused.  The scheduler
    and workers require a token made for this cluster (``token=`` gives one,
    ``token=False`` turns it off); ``Client(cluster)`` uses it, and a client
    of the same user on this machine finds it for ``cluster.scheduler_address``.
    A ``SpecCluster``: ``scale``, ``adapt``, ``worker_spec`` and ``new_spec``
    work as there.  Use as a context manager or call ``close()``."""

    def __init__(self, n_workers=None, threads_per_worker=None, processes=True,
                 memory_limit="auto", dashboard_address=_DEFAULT, scheduler_port=0,
                 host="127.0.0.1", asynchronous=False, name=None, silence_logs=None,
                 resources=None, protocol=None, validate=None, nthreads=None,
                 worker_dashboard_address=None, interface=None, local_directory=None,
                 token=None, security=None, allowed_failures=None, worker_class=None,
                 scheduler_kwargs=None, memory_target_fraction=None,
                 memory_spill_fraction=None, memory_pause_fraction=None,
                 memory_terminate_fraction=None, **kwargs):
        if kwargs:
            raise TypeError(f"LocalCluster() got unexpected keyword argument(s): {sorted(kwargs)}")
        if security is True:
            from trioflow.security import Security
            security = Security.temporary()
        if nthreads is not None and threads_per_worker is None:
            threads_per_worker = nthreads
        self.n_workers, self.threads_per_worker = _defaults(n_workers, threads_per_worker,
                                                             processes)
        self.processes = bool(processes)
        self.memory_limit = memory_limit_bytes(memory_limit, self.n_workers)
        # read here: worker processes do not see this process's dask.config.set
        self.resources = worker_resources(resources)
        self._memory = {"memory_target_fraction": memory_target_fraction,
                        "memory_spill_fraction": memory_spill_fraction,
                        "memory_pause_fraction": memory_pause_fraction,
                        "memory_terminate_fraction": memory_terminate_fraction,
                        "local_directory": local_directory}
        # a bad threshold (keyword or dask setting) fails here, before anything starts
        memory_fractions(memory_target_fraction, memory_spill_fraction, memory_pause_fraction,
                         memory_terminate_fraction)
        self.validate = validate
        self.allowed_failures = allowed_failures  # None: dask config, else 3
        self.dashboard_address = (default_dashboard_address() if dashboard_address is _DEFAULT
                                  else dashboard_address)
        self.worker_dashboard_address = worker_dashboard_address
        self.host = host
        if protocol in ("inproc", "inproc://") or (protocol is None and not processes):
            # in one process nothing crosses a socket: security= has nothing to encrypt
            listen = new_address()
        else:
            scheme = (protocol or "").replace("://", "") or (
                "wss" if security else "ws")
            # "tcp"/"tls" are spellings of ws/wss: the address parser maps them
            listen = f"{scheme}://{host}:{scheduler_port or 0}"
        self.worker_class = worker_class  # None: Nanny with processes, else Worker
        scheduler = {"cls": Scheduler, "options": {
            "address": listen, "validate": validate, "allowed_failures": allowed_failures,
            "dashboard_address": self.dashboard_address, **(scheduler_kwargs or {})}}
        self._i = self.n_workers
        super().__init__(workers={i: self.new_spec for i in range(self.n_workers)},
                         scheduler=scheduler, asynchronous=asynchronous, name=name,
                         security=security or None, token=token)
        self._i = max(self._i, self.n_workers)

    @property
    def new_spec(self):
        """The spec of the next worker: made from the cluster's attributes
        (``resources``, ``threads_per_worker``...) as they are now."""
        options = {"nthreads": self.threads_per_worker, "memory_limit": self.memory_limit,
                   "resources": self.resources,
                   "dashboard_address": self.worker_dashboard_address,
                   # only those given: a worker_class of the user's need not know them
                   **{k: v for k, v in self._memory.items() if v is not None}}
        if self.processes:
            options["host"] = self.host
            return {"cls": self.worker_class or Nanny, "options": options}
        options["validate"] = self.validate
        return {"cls": self.worker_class or Worker, "options": options}

    @new_spec.setter
    def new_spec(self, spec):
        raise AttributeError("a LocalCluster's worker spec follows its attributes "
                             "(threads_per_worker, memory_limit, resources)")

    def _threads_per_worker(self) -> int:
        return self.threads_per_worker

    def _memory_per_worker(self) -> int:
        if not self.memory_limit:
            raise ValueError("scale(memory=) needs workers with a memory_limit")
        return self.memory_limit

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

    def __repr__(self):
        return (f"LocalCluster({self.scheduler_address!r}, workers={len(self.workers)}, "
                f"threads={len(self.workers) * self.threads_per_worker}, "
                f"processes={self.processes})")


def _text(records) -> str:
    return "\n".join(line for _level, line in records)


def _worker_logs(dask_worker=None):
    from trioflow.server.logs import recent
    return recent(None, ("trioflow.worker", "trioflow.comm"))
