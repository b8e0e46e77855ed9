"""``Client``: the user's handle on a cluster, with distributed's API.

The blocking face runs ``ClientCore`` in the shared loop thread and makes
each call one portal round trip (or none: ``submit`` and ``map`` only queue
a message).  ``Client()`` with no address starts the cluster ``deploy/``
registered (``LocalCluster``, see ``client.local_cluster``) and owns it.
"""
from __future__ import annotations

import inspect
import logging
import uuid
from collections.abc import Iterator

from trioflow.client.admin import AdminMixin
from trioflow.client.containers import futures_of, lists_for_iterators, pack
from trioflow.server.background import BackgroundContext
from trioflow.client.core import ClientCore, data_token, new_client_id
from trioflow.client.future import Future
from trioflow.client.compat import CompatMixin
from trioflow.client.graph_calls import GraphsMixin
from trioflow.client.current import client_closing, client_started, default_client  # noqa: F401
from trioflow.client.printing import PRINT_TOPIC, WARN_TOPIC, print_forwarded, warn_forwarded
from trioflow.client.introspection import IntrospectionMixin
from trioflow.client.local_cluster import local_cluster
from trioflow.client.port import ClientPort
from trioflow.client.options import check_key, optional_workers, task_options
from trioflow.comm.addressing import normalize_address
from trioflow.comm.tokens import read_scheduler_file, write_private_json
from trioflow.config import config_value
from trioflow.core.keys import key_prefix
from trioflow.errors import TrioflowError
from trioflow.protocol.dask_graph import GRAPH_PART
from trioflow.protocol.tasks import dumps_args, dumps_task_function, token
from trioflow.utils import dashboard_link, parse_timedelta

logger = logging.getLogger("trioflow.client")

_no_default = "__no_default__"



def client_for_worker(worker) -> "Client":
    """The client the tasks on ``worker`` share (the worker's client factory,
    see ``server.worker_hooks``): not started, the worker enters it."""
    return Client(worker.scheduler_address, asynchronous=True, set_as_default=False,
                  token=worker.token, security=worker.security, _security_role="worker",
                  name=f"worker-client-{worker.name}")


class Client(AdminMixin, CompatMixin, GraphsMixin, IntrospectionMixin):
    """Connect to a trioflow scheduler (or start a local cluster).

    ``Client()`` starts a ``LocalCluster`` with the keyword arguments dask
    users pass (``n_workers``, ``threads_per_worker``, ``processes``,
    ``memory_limit``, ``dashboard_address``, ``scheduler_port``...) and closes
    it with the client.  ``Client("ws://host:8786")`` (also ``host:port`` or
    ``tcp://``), ``Client(cluster)`` or ``Client(scheduler_file="s.json")``
    connect to a running one.

    ``token=`` (else the scheduler file's, or $TRIOFLOW_TOKEN) is the token the
    scheduler requires; to a loopback address a client finds its user's by itself.

    ``security=`` (a ``trioflow.Security``) gives the TLS settings for a
    wss:// scheduler; ``security=True`` without an address starts a local
    cluster whose processes talk TLS with a throwaway certificate.

    Accepted for compatibility, without effect: ``loop``, ``heartbeat_interval``, ``serializers``,
    ``deserializers``, ``extensions``, ``direct_to_workers`` (data always moves
    directly between the client and the workers), ``connection_limit``.
    """

    def __init__(self, address=None, loop=None, timeout=_no_default, set_as_default=True,
                 scheduler_file=None, security=None, asynchronous=False, name=None,
                 heartbeat_interval=None, serializers=None, deserializers=None,
                 extensions=None, direct_to_workers=None, connection_limit=512,
                 token=None, _security_role="client", **kwargs):
        self._asynchronous = bool(asynchronous)
        self.security = None if security is True else security
        self._security_role = _security_role
        self.id = new_client_id()
        self.name = name
        self.status = "newly-created"
        self._timeout = 30.0 if timeout in (_no_default, None) else parse_timedelta(timeout)
        self._token = token
        self._set_as_default_flag = set_as_default
        self.cluster = None
        self._owns_cluster = False
        self._func_cache: dict = {}
        self._core: ClientCore | None = None
        self._host: BackgroundContext | None = None
        #: what coordination primitives use of this client (client/port.py)
        self.port = ClientPort(self)
        self._cluster_kwargs: dict = {}
        self._dashboard: tuple | None = None  # (host, port) the scheduler reported

        self._scheduler_file = None
        if scheduler_file is not None and address is None:
            address, self._token = read_scheduler_file(scheduler_file, token)
            self._scheduler_file = None if token else scheduler_file
        elif address is None:
            address = config_value("scheduler-address")  # DASK_SCHEDULER_ADDRESS, as dask
            if address is not None and kwargs:
                raise TypeError(f"Client() got cluster argument(s) {sorted(kwargs)}, but dask's "
                                f"config 'scheduler-address' names {address!r} to connect to")
        if address is None:
            unknown = set(kwargs) - _CLUSTER_KWARGS
            if unknown:
                raise TypeError(f"Client() got unexpected keyword argument(s): {sorted(unknown)}")
            self._cluster_kwargs = dict(kwargs)
            if security is not None:
                self._cluster_kwargs["security"] = security
            self.scheduler_address = None
        else:
            if kwargs:
                raise TypeError(f"Client() got unexpected keyword argument(s): {sorted(kwargs)}")
            if hasattr(address, "scheduler_address"):
                self.cluster = address
                address = address.scheduler_address
                if self.security is None:
                    self.security = getattr(self.cluster, "security", None)
                self._token = token or getattr(self.cluster, "token", None)
            self.scheduler_address = normalize_address(address)
            if self.security is not None:
                self.security.check_address(self.scheduler_address, "scheduler address")
        if not self._asynchronous:
            self._start_blocking()

    @property
    def asynchronous(self) -> bool:
        """True where this client's methods return awaitables: an async client,
        or a client hosted in a trio loop (a worker's) called from that loop."""
        if self._asynchronous:
            return self._host is None or self._host.mode != "trio" or self._host.in_host_loop()
        return False

    def _new_core(self):
        self._core = ClientCore(self.scheduler_address, client_id=self.id, name=self.name,
                                timeout=self._timeout, token=self._token,
                                security=self.security, security_role=self._security_role,
                                token_source=self._token_source())
        self._host = BackgroundContext(lambda: self._core)

    def _token_source(self):
        """Where the token comes from when the client connects again to a
        scheduler that restarted: the scheduler file read anew, else the
        token it was given (None: found on this machine again)."""
        path, known = self._scheduler_file, self._token
        if path is None:
            return lambda: known

        def from_file():
            try:
                return read_scheduler_file(path)[1]
            except (OSError, ValueError, KeyError):
                return known  # being rewritten, or gone: try the old one
        return from_file

    def _start_blocking(self):
        if self.scheduler_address is None:
            self.cluster = local_cluster()(**self._cluster_kwargs)
            self._owns_cluster = True
            self.scheduler_address = self.cluster.scheduler_address
            self.security, self._token = self.cluster.security, self.cluster.token
        try:
            self._new_core()
            self._host.start_blocking()
        except BaseException:
            if self._owns_cluster:
                self.cluster.close()
            raise
        self._started()

    async def _start_async(self):
        if self.status == "running":
            return self
        if self.scheduler_address is None:
            self.cluster = await local_cluster()(asynchronous=True, **self._cluster_kwargs)
            self._owns_cluster = True
            self.scheduler_address = self.cluster.scheduler_address
            self.security, self._token = self.cluster.security, self.cluster.token
        try:
            self._new_core()
            await self._host.start_async()
        except BaseException:
            if self._owns_cluster:
                await self.cluster.close()
            raise
        self._started()
        if self.cluster is None:  # the dashboard_link property cannot await
            self._learn_dashboard(await self._request({"op": "identity"}))
        return self

    def _started(self):
        self.status = "running"
        client_started(self, self._set_as_default_flag)
        if self._security_role == "client":  # not a worker's own client: its worker printed
            # what tasks print and warn shows here too, as with dask's client
            self.subscribe_topic(PRINT_TOPIC, print_forwarded)
            self.subscribe_topic(WARN_TOPIC, warn_forwarded)

    def __await__(self):
        return self._start_async().__await__()

    async def __aenter__(self):
        return await self._start_async()

    async def __aexit__(self, *exc_info):
        await self._close_async()

    # ---------------------------------------------------------------- plumbing

    def _sync(self, async_fn, *args, asynchronous=None):
        """Run ``async_fn(*args)`` in the client's loop, in the caller's face
        (``ClientPort.run``)."""
        return self.port.run(async_fn, *args, asynchronous=asynchronous)

    def _request(self, msg, asynchronous=None):
        return self._sync(self._core.request, msg, asynchronous=asynchronous)

    def __repr__(self):
        return f"<Client: {self.scheduler_address!r}, status={self.status}>"

    @property
    def status(self) -> str:
        """As dask's: "connecting" while it connects again to a scheduler it
        lost, and "lost-scheduler" once it gave up (after ``timeout``)."""
        core = getattr(self, "_core", None)
        if self._status == "running" and core is not None and core.lost is not None:
            return core.status
        return self._status

    @status.setter
    def status(self, value: str):
        self._status = value

    @property
    def dashboard_link(self):
        """The URL of the scheduler's dashboard, or None if it serves none.
        ``TRIOFLOW_DASHBOARD_LINK`` (or dask's ``DASK_DISTRIBUTED__DASHBOARD__LINK``)
        is its template, e.g. for a proxy."""
        if self.cluster is not None and hasattr(self.cluster, "dashboard_link"):
            return self.cluster.dashboard_link
        if self._dashboard is None:
            if self._asynchronous:  # it learnt the address when it started
                return None
            self._learn_dashboard(self.scheduler_info())
        host, port = self._dashboard
        return None if port is None else dashboard_link(host, port)

    def _learn_dashboard(self, info: dict):
        self._dashboard = _dashboard_of(info, self.scheduler_address)

    # ---------------------------------------------------------------- lifetime

    def __enter__(self):
        if self._asynchronous:
            raise TypeError("use 'async with' for an asynchronous Client")
        return self

    def __exit__(self, *exc_info):
        self.close()

    def close(self, timeout=_no_default):
        """Close the connection (and the cluster this client started).  Returns
        when every thread, task and process it started is gone.  An
        asynchronous client returns an awaitable."""
        if self._asynchronous:
            return self._close_async()
        if self.status in ("closed", "newly-created"):
            self.status = "closed"
            return
        self.status = "closing"
        client_closing(self)
        try:
            self._host.stop_blocking()
        finally:
            self.status = "closed"
            if self._owns_cluster and self.cluster is not None:
                self.cluster.close()

    async def _close_async(self):
        if self.status in ("closed", "newly-created"):
            self.status = "closed"
            return
        self.status = "closing"
        client_closing(self)
        try:
            await self._host.stop_async()
        finally:
            self.status = "closed"
            if self._owns_cluster and self.cluster is not None:
                await self.cluster.close()

    def __del__(self):
        if getattr(self, "status", "closed") == "running" and not self._asynchronous:
            try:
                self.close()
            except Exception:
                pass

    def shutdown(self):
        """Close the scheduler and workers this client is connected to, then the client.
        An asynchronous client returns an awaitable."""
        return self._shutdown_async() if self._asynchronous else self._shutdown_blocking()

    def _shutdown_blocking(self):
        try:
            self._sync(self._retire_all)
        finally:
            if self.cluster is not None:
                self.cluster.close()
            self.close()

    async def _retire_all(self):
        # the scheduler closes its workers, answers, then closes itself when it
        # runs under the CLI; a LocalCluster is closed by our caller instead
        await self._core.request({"op": "terminate"})

    async def _shutdown_async(self):
        try:
            await self._sync(self._retire_all)
        finally:
            if self.cluster is not None:
                closing = self.cluster.close()
                if inspect.isawaitable(closing):
                    await closing
            await self._close_async()

    def write_scheduler_file(self, scheduler_file: str):
        """Write the scheduler's address (and token) as JSON so other clients
        can find it; the file is readable by this user only."""
        token = self._core.token if self._core is not None else self._token
        info = {"address": self.scheduler_address, "type": "Scheduler", "token": token}
        write_private_json(scheduler_file, {k: v for k, v in info.items() if v is not None})

    # ---------------------------------------------------------------- submission

    def _function_payload(self, func) -> bytes:
        cached = self._func_cache.get(id(func))
        if cached is not None and cached[0] is func:
            return cached[1]
        payload = dumps_task_function(func)
        if len(self._func_cache) > 64:
            self._func_cache.clear()
        self._func_cache[id(func)] = (func, payload)
        return payload

    def _task(self, func, func_payload, args, kwargs, key, pure, prefix, options):
        if key is not None:
            check_key(key)
        args_payload, deps = dumps_args(args, kwargs)
        if key is None:
            name = prefix or _funcname(func)
            key = f"{name}-{token(func_payload, args_payload) if pure else uuid.uuid4().hex}"
        task = {"key": key, "run_spec": (func_payload, args_payload),
                "deps": list(deps), **options}
        if inspect.iscoroutinefunction(func):
            task["is_async"] = True
        return key, task

    def submit(self, func, *args, key=None, workers=None, resources=None, retries=None,
               priority=0, fifo_timeout="100 ms", allow_other_workers=False, actor=False,
               actors=False, pure=None, timeout=None, **kwargs):
        """Run ``func(*args, **kwargs)`` on the cluster; return a Future.

        ``pure=True`` names the task by a hash of the function and arguments,
        so submitting the same call again reuses it; ``pure=False`` always
        runs anew.  ``workers=`` restricts it to those workers (addresses or
        names) unless ``allow_other_workers``; ``retries=`` reruns a failing
        task; higher ``priority`` runs first; ``resources={"GPU": 1}`` runs it
        only where the workers declare enough.  ``fifo_timeout`` is accepted
        and has no effect (submission order already breaks priority ties).

        ``actor=True`` (or ``actors=True``) makes ``func`` (a class) an actor:
        one instance kept on one worker, whose ``result()`` is a
        ``trioflow.Actor`` proxy calling it directly (see docs/actors.md).

        ``timeout=seconds`` (beyond dask) is a deadline for each run of the task:
        a run still going past it is stopped like a cancelled one (at once
        for ``async def`` tasks, at the next ``trioflow.checkpoint()`` for
        sync ones) and the future errs with ``trioflow.TimeoutError``, which
        counts as a failure for ``retries=``.  It is not passed to ``func``."""
        if not callable(func):
            raise TypeError(f"First input to submit must be a callable function, got {func!r}")
        actor = bool(actor or actors)
        options = task_options(workers, resources, retries, priority, allow_other_workers,
                               timeout, call="submit()")
        if actor:
            options["actor"] = True
        # an actor is stateful: never one shared instance for equal submissions
        key, task = self._task(func, self._function_payload(func), args, kwargs, key,
                               pure is not False and not actor, None, options)
        future = Future(key, self, inform=False)
        self._core.send({"op": "update-graph", "tasks": [task], "wanted": [key]})
        return future

    def map(self, func, *iterables, key=None, workers=None, retries=None, resources=None,
            priority=0, allow_other_workers=False, fifo_timeout="100 ms", actor=False,
            actors=False, pure=None, batch_size=None, timeout=None, **kwargs):
        """``submit(func, *args)`` for each tuple of items of ``iterables``.

        ``key=`` is a prefix for the keys or a list of keys; ``batch_size``
        sends the tasks to the scheduler in batches of that many."""
        if not callable(func):
            raise TypeError(f"First input to map must be a callable function, got {func!r}")
        actor = bool(actor or actors)
        argsets = list(zip(*iterables))
        keys = list(key) if isinstance(key, (list, tuple)) else None
        if keys is not None and len(keys) != len(argsets):
            raise ValueError(f"map got {len(keys)} keys for {len(argsets)} tasks")
        prefix = key if isinstance(key, str) else None
        pure = pure is not False and not actor
        options = task_options(workers, resources, retries, priority, allow_other_workers,
                               timeout, call="map()")
        if actor:
            options["actor"] = True
        func_payload = self._function_payload(func)
        futures, tasks = [], []
        for i, args in enumerate(argsets):
            k, task = self._task(func, func_payload, args, kwargs,
                                 keys[i] if keys is not None else None, pure, prefix, options)
            tasks.append(task)
            futures.append(Future(k, self, inform=False))
        # parts of a bounded size even without batch_size: the scheduler
        # takes each in one step, so a million tasks never stall its loop
        batch = min(int(batch_size), GRAPH_PART) if batch_size else GRAPH_PART
        for start in range(0, len(tasks), batch):
            chunk = tasks[start:start + batch]
            self._core.send({"op": "update-graph", "tasks": chunk,
                             "wanted": [t["key"] for t in chunk]})
        return futures

    # ---------------------------------------------------------------- results

    def gather(self, futures, errors="raise", direct=None, asynchronous=None):
        """Results of futures; lists, tuples, sets and dicts of futures (nested
        too) come back with the same shape.  An iterator gives an iterator
        of the results in its order, gathered one by one as it is read, as
        dask does (with an asynchronous client: of awaitables).
        ``errors="skip"`` leaves erred futures out.  ``direct`` is accepted:
        data always comes straight from the workers."""
        if errors not in ("raise", "skip"):
            raise ValueError(f"errors must be 'raise' or 'skip', not {errors!r}")
        if isinstance(futures, Iterator):
            return self._gather_each(futures, errors, asynchronous)
        return self._sync(self._gather, lists_for_iterators(futures), errors,
                          asynchronous=asynchronous)

    def _gather_each(self, futures, errors, asynchronous):
        if asynchronous or self.asynchronous:
            for item in futures:
                yield self.gather(item, errors=errors, asynchronous=asynchronous)
            return
        for item in futures:
            found = self.gather([item], errors=errors)
            if found:  # empty when the item erred and errors="skip"
                yield found[0]

    async def _gather(self, futures, errors):
        found = futures_of(futures)
        values = await self._core.gather(found, errors) if found else {}
        return pack(futures, values)

    def scatter(self, data, workers=None, broadcast=False, direct=None, hash=True,
                timeout=_no_default, asynchronous=None):
        """Move data to workers; return futures of the same shape: a Future
        for a single object, and for a list, tuple (named too), set,
        frozenset or dict (exactly those types, as dask) the same container
        of futures; a ``range`` gives a list, an iterator an iterator.  A
        subclass of them (a dict subclass, say) is one object.
        ``broadcast`` puts a copy on every worker (or every one of ``workers=``)."""
        if isinstance(data, range):
            data = list(data)
        shape = type(data)
        if isinstance(data, Iterator):
            data = list(data)
        named = isinstance(data, tuple) and hasattr(data, "_fields")
        if type(data) is dict:
            items, order = dict(data), list(data)
        else:
            values = (list(data) if type(data) in (list, tuple, set, frozenset) or named
                      else [data])
            items, order = {}, []
            for value in values:
                name = key_prefix(type(value).__name__)
                k = f"{name}-{data_token(value) if hash else uuid.uuid4().hex}"
                items[k] = value
                order.append(k)
        if any(isinstance(value, Future) for value in items.values()):
            raise TypeError("scatter got futures: they already live on the cluster")
        workers = optional_workers(workers, "scatter()")
        futures = {k: Future(k, self, inform=False) for k in items}
        seconds = self._timeout if timeout == _no_default else parse_timedelta(timeout)
        return self._sync(self._scatter, shape, items, order, futures, workers, broadcast,
                          seconds, asynchronous=asynchronous)

    async def _scatter(self, shape, items, order, futures, workers, broadcast, seconds):
        if items:
            nthreads = await self._core.request({"op": "nthreads", "workers": None})
            if not nthreads:
                await self._wait_for_workers(1, seconds)
                nthreads = await self._core.request({"op": "nthreads", "workers": None})
            addresses = sorted(nthreads)
            if workers is not None:
                wanted = workers
                info = (await self._core.request({"op": "identity"}))["workers"]
                addresses = [a for a in addresses if a in wanted or info[a].get("name") in wanted]
                if not addresses:
                    raise ValueError(f"none of the workers {wanted} is in the cluster")
            if broadcast:
                targets = {k: list(addresses) for k in items}
            else:
                targets = {k: [addresses[i % len(addresses)]] for i, k in enumerate(items)}
            types = {k: type(v).__name__ for k, v in items.items()}
            await self._core.scatter(items, targets, types)
        if shape is dict:
            return futures
        result = [futures[k] for k in order]
        if issubclass(shape, Iterator):
            return iter(result)
        if shape in (list, tuple, set, frozenset):
            return shape(result)
        if issubclass(shape, tuple) and hasattr(shape, "_fields"):
            return shape._make(result)
        return result[0]

    def futures_of(self, futures):
        """The futures in ``futures`` (nested containers, iterators, dask
        collections), each once: ``trioflow.futures_of``."""
        return futures_of(futures)

    def cancel(self, futures, asynchronous=None, force=False):
        """Cancel futures (and what depends on them); their ``result()`` raises
        ``CancelledError``.  ``force`` cancels for every client that wants them."""
        return self._sync(self._cancel, futures_of(futures), force,
                          asynchronous=asynchronous)

    async def _cancel(self, futures, force):
        for f in futures:
            state = f._state
            if state.status != "cancelled":
                state.cancel()
                self._core._run_callbacks(state)
            self._core.detach(state)
        self._core.send({"op": "cancel-keys", "keys": [f.key for f in futures], "force": force})
        # The scheduler answers in order: once this reply is here, its
        # cancelled-key messages for these keys are too, so they cannot hit
        # a future for the same key submitted after cancel() returns.
        await self._core.request({"op": "who-has", "keys": []})

    def retry(self, futures, asynchronous=None):
        """Run erred futures (and what failed because of them) again."""
        return self._sync(self._retry, futures_of(futures), asynchronous=asynchronous)

    async def _retry(self, futures):
        for f in futures:
            f._state.reset()
        self._core.send({"op": "retry-keys", "keys": [f.key for f in futures]})

    def replicate(self, futures, n=None, workers=None, branching_factor=2, asynchronous=None):
        """Copy the futures' data until each is on ``n`` workers (default: all
        of ``workers`` or of the cluster), once they are done (as dask).
        ``branching_factor`` is accepted; copies are fetched directly from a
        current holder."""
        workers = optional_workers(workers, "replicate()")
        return self._sync(self._replicate, futures_of(futures), n, workers,
                          asynchronous=asynchronous)

    async def _replicate(self, futures, n, workers):
        await _all_done(futures)
        await self._core.replicate([f.key for f in futures], n, workers)

    def rebalance(self, futures=None, workers=None, asynchronous=None):
        """Move data so that the bytes of ``futures`` (default: everything in
        memory) are spread evenly over ``workers`` (default: all), once the
        futures are done."""
        futures = None if futures is None else futures_of(futures)
        workers = optional_workers(workers, "rebalance()")
        return self._sync(self._rebalance, futures, workers, asynchronous=asynchronous)

    async def _rebalance(self, futures, workers):
        await _all_done(futures or [])
        keys = None if futures is None else [f.key for f in futures]
        return await self._core.request({"op": "rebalance", "keys": keys, "workers": workers})

    def restart(self, timeout=_no_default, wait_for_workers=True, asynchronous=None):
        """Forget every task and restart the workers (those under nannies get
        fresh processes; in-process workers drop their data).  Every future
        of every client becomes cancelled, and its ``result()`` says the
        cluster was restarted."""
        seconds = 60.0 if timeout == _no_default else parse_timedelta(timeout)
        return self._request({"op": "restart", "timeout": seconds}, asynchronous=asynchronous)

    def task_group(self):
        """A structured group of remote tasks: ``async with client.task_group()
        as tg:`` (or ``with`` for a blocking client).  Leaving the block waits
        for the group's tasks; the first failure cancels the rest and raises an
        ExceptionGroup of the real errors; cancelling the enclosing scope
        cancels the group's tasks."""
        from trioflow.client.task_group import TaskGroup
        return TaskGroup(self)

    def channel(self, name, maxlen=None):
        """The channel ``name``: a stream of futures shared by every client of
        the scheduler (see ``trioflow.Channel``).
        ``maxlen`` bounds how many of the newest futures it keeps."""
        from trioflow.client.primitives.channels import channel
        return channel(self, name, maxlen)

    def get_executor(self, **kwargs):
        """A ``concurrent.futures.Executor`` that submits to this client;
        ``kwargs`` (``workers=``, ``retries=``, ``resources=``...) go to each submit."""
        from trioflow.client.executor import ClientExecutor
        return ClientExecutor(self, **kwargs)

    # ---------------------------------------------------------------- cluster information

    def who_has(self, futures=None, **kwargs):
        """Which workers hold each key: ``{key: [address, ...]}``."""
        keys = None if futures is None else [f.key for f in futures_of(futures)]
        return self._request({"op": "who-has", "keys": keys})

    def has_what(self, workers=None, **kwargs):
        """Which keys each worker holds: ``{address: [key, ...]}``."""
        workers = optional_workers(workers, "has_what()")
        return self._request({"op": "has-what", "workers": workers})

    def nthreads(self, workers=None, **kwargs):
        """Threads of each worker: ``{address: n}``."""
        workers = optional_workers(workers, "nthreads()")
        return self._request({"op": "nthreads", "workers": workers})

    ncores = nthreads

    def scheduler_info(self, **kwargs):
        """The scheduler's view: ``{"workers": {address: {"nthreads", "memory_limit", "name", ...}}, ...}``."""
        return self._request({"op": "identity"})

    def wait_for_workers(self, n_workers=0, timeout=None):
        """Block until at least ``n_workers`` workers are connected."""
        if isinstance(n_workers, bool) or not hasattr(n_workers, "__index__"):
            raise TypeError(f"wait_for_workers() takes a number of workers, not {n_workers!r}")
        return self._sync(self._wait_for_workers, n_workers, parse_timedelta(timeout))

    async def _wait_for_workers(self, n, seconds):
        if n <= 0:
            return
        from trioflow.client.core import _timeout
        with _timeout(seconds, f"fewer than {n} workers"):
            await self._core.request({"op": "wait-for-workers", "n": n})

    def run_on_scheduler(self, function, *args, **kwargs):
        """Run ``function(*args, **kwargs)`` in the scheduler's process; a
        ``dask_scheduler`` parameter receives the Scheduler object."""
        return self._sync(self._run_on_scheduler, function, args, kwargs)

    async def _run_on_scheduler(self, function, args, kwargs):
        from trioflow.protocol.serialize import deserialize, serialize
        result = await self._core.request({
            "op": "run-on-scheduler", "function": serialize(function),
            "args": serialize(args), "kwargs": serialize(kwargs)})
        return deserialize(result)

    def run(self, function, *args, workers=None, wait=True, nanny=False, on_error="raise",
            **kwargs):
        """Run ``function`` on every worker (or ``workers=``); returns
        ``{address: result}``.  A ``dask_worker`` parameter receives the Worker."""
        workers = optional_workers(workers, "run()")
        return self._sync(self._run, function, args, kwargs, workers, on_error)

    async def _run(self, function, args, kwargs, workers, on_error):
        if workers is None:
            workers = await self._core.request({"op": "worker-addresses"})
        return await self._core.run_on_workers(function, args, kwargs, list(workers), on_error)


_CLUSTER_KWARGS = frozenset({
    "n_workers", "threads_per_worker", "processes", "memory_limit", "dashboard_address",
    "scheduler_port", "host", "name", "silence_logs", "resources", "worker_class",
    "protocol", "local_directory", "nthreads", "interface", "worker_dashboard_address",
    "validate",
})


def _dashboard_of(info: dict, scheduler_address: str) -> tuple:
    port = (info.get("services") or {}).get("dashboard")
    host = info.get("dashboard_host")
    if host in (None, "", "0.0.0.0", "::"):
        host = _host_of(scheduler_address)
    return host, port


def _host_of(address: str) -> str:
    return address.split("://", 1)[-1].rsplit(":", 1)[0].strip("[]")


def _funcname(func) -> str:
    name = getattr(func, "__name__", None) or type(func).__name__
    if name == "<lambda>":
        return "lambda"
    return name


async def _all_done(futures):
    for future in futures:
        await future._state.wait()
