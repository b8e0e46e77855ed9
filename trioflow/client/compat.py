"""The parts of dask.distributed's ``Client`` that are about the client
itself rather than the cluster: ``client.sync``, ``client.scheduler`` (a
small stand-in for dask's scheduler rpc), a ``dir()`` without private
names, and, for the names of dask's API that trioflow has not, an
AttributeError that says what to use instead.  Mixed into ``Client``."""
from __future__ import annotations

import inspect

#: dask.distributed Client attributes trioflow has not, with what to use instead
UNSUPPORTED = {
    "loop": "trioflow's client runs on trio, not a tornado IOLoop: run coroutines with "
            "client.sync(func, *args), or use Client(asynchronous=True) in your own trio or "
            "asyncio loop",
    "io_loop": "trioflow's client runs on trio, not a tornado IOLoop: run coroutines with "
               "client.sync(func, *args), or use Client(asynchronous=True)",
    "amm": "trioflow has no active memory manager: use client.replicate(), "
           "client.rebalance() or client.retire_workers() to move data",
    "benchmark_hardware": "trioflow does not benchmark hardware; see benchmarks/ in its "
                          "repository for throughput measurements",
    "forward_logging": "trioflow does not forward worker logs to the client: read them with "
                       "client.get_worker_logs()",
    "unforward_logging": "trioflow does not forward worker logs to the client: read them "
                         "with client.get_worker_logs()",
    "register_worker_callbacks": "use client.register_worker_plugin(plugin) with a "
                                 "WorkerPlugin whose setup(worker) does the work",
    "register_scheduler_plugin": "trioflow has no scheduler plugins: use worker plugins "
                                 "(client.register_worker_plugin) or client.run_on_scheduler",
    "unregister_scheduler_plugin": "trioflow has no scheduler plugins: see "
                                   "client.unregister_worker_plugin",
    "restart_workers": "use client.restart() (every worker) or client.retire_workers(...)",
    "recreate_error_locally": "call future.exception() and future.traceback(), or rerun "
                              "the function locally with the same arguments",
    "recreate_task_locally": "rerun the function locally with the arguments of the task",
    "get_restrictions": "pass workers= to submit/compute and read client.who_has() "
                        "for where data went",
}


class SchedulerRpc:
    """``client.scheduler``: the scheduler's address and the calls of dask's
    scheduler rpc that a client user makes (coroutine functions, as dask's:
    ``await client.scheduler.identity()`` on an asynchronous client, or
    ``client.sync(client.scheduler.identity)`` on a blocking one)."""

    def __init__(self, client):
        self._client = client

    @property
    def address(self) -> str:
        return self._client.scheduler_address

    def __repr__(self):
        return f"<scheduler rpc to {self.address!r}>"

    async def _ask(self, msg):
        return await self._client._in_client_loop(self._client._core.request, msg)

    async def identity(self) -> dict:
        """What ``client.scheduler_info()`` gives: the scheduler's type, id,
        address, and a map of its workers."""
        return await self._ask({"op": "identity"})

    async def who_has(self, keys=None) -> dict:
        return await self._ask({"op": "who-has", "keys": None if keys is None else list(keys)})

    async def has_what(self, workers=None) -> dict:
        return await self._ask({"op": "has-what",
                                "workers": None if workers is None else list(workers)})

    async def ncores(self, workers=None) -> dict:
        return await self._ask({"op": "nthreads",
                                "workers": None if workers is None else list(workers)})

    nthreads = ncores

    async def processing(self, workers=None) -> dict:
        return await self._ask({"op": "processing",
                                "workers": None if workers is None else list(workers)})

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        raise AttributeError(
            f"trioflow's client.scheduler offers address, identity(), who_has(), has_what(), "
            f"ncores() and processing(), not {name!r}; use the Client's own methods "
            f"(client.{name}(...) if it has one) or client.run_on_scheduler(func)")


class CompatMixin:
    # ---------------------------------------------------------------- sync

    def sync(self, func, *args, asynchronous=None, callback_timeout=None, **kwargs):
        """Run ``func(*args, **kwargs)``, a coroutine function, in the client's
        loop and return its result, as dask's ``Client.sync`` does.  Under an
        asynchronous client (or with ``asynchronous=True``) it returns the
        awaitable instead.  The coroutine may use trio or asyncio.
        ``callback_timeout`` (seconds) raises ``trioflow.TimeoutError``."""
        from trioflow.utils import parse_timedelta
        seconds = parse_timedelta(callback_timeout)
        if not callable(func):
            raise TypeError(f"sync() takes a coroutine function and its arguments, "
                            f"not {type(func).__name__} {func!r:.60}")
        if asynchronous or (asynchronous is None and self.asynchronous):
            return _with_timeout(func(*args, **kwargs), seconds)
        return self._sync(_run_user_function, func, args, kwargs, seconds)

    async def _in_client_loop(self, async_fn, *args):
        """Await ``async_fn(*args)`` in the client's loop from wherever this
        coroutine is awaited: that loop itself (inside ``sync``) or another."""
        host = self._host
        if host is not None and host.in_host_loop():
            return await async_fn(*args)
        return await self._sync(async_fn, *args, asynchronous=True)

    @property
    def scheduler(self) -> SchedulerRpc:
        """The scheduler, as dask's rpc: ``.address`` and ``identity()``."""
        return SchedulerRpc(self)

    # ---------------------------------------------------------------- names

    def __dir__(self):
        # no private names: Python's "did you mean" hints come from dir()
        return sorted(n for n in super().__dir__()
                      if not n.startswith("_") or (n.startswith("__") and n.endswith("__")))

    def __getattr__(self, name):
        raise missing_attribute(self, name, UNSUPPORTED, "Client")


def missing_attribute(obj, name: str, unsupported: dict, what: str) -> AttributeError:
    """The AttributeError for ``obj.name``: with what to use instead when
    ``name`` is one of dask's that ``unsupported`` lists."""
    advice = unsupported.get(name)
    if advice is not None:
        return AttributeError(f"trioflow's {what} has no {name!r}: {advice}", name=name, obj=obj)
    return AttributeError(f"{type(obj).__name__!r} object has no attribute {name!r}",
                          name=name, obj=obj)


async def _run_user_function(func, args, kwargs, seconds):
    from trioflow.server.asyncio_bridge import run_coroutine
    result = func(*args, **kwargs)
    if not inspect.isawaitable(result):
        return result
    if not inspect.iscoroutine(result):
        result = _awaited(result)
    import trio
    from trioflow.errors import TimeoutError
    with trio.move_on_after(float("inf") if seconds is None else seconds):
        return await run_coroutine(result)
    raise TimeoutError(f"sync({getattr(func, '__name__', func)!s}) took longer than {seconds} s")


async def _awaited(awaitable):
    return await awaitable


def _with_timeout(awaitable, seconds):
    if seconds is None:
        return awaitable  # as dask: the awaitable itself
    return _timed(awaitable, seconds)


async def _timed(awaitable, seconds):
    from trioflow.errors import TimeoutError
    from trioflow.server.background import current_library
    if current_library() == "asyncio":
        import asyncio
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except asyncio.TimeoutError:
            raise TimeoutError(f"sync() took longer than {seconds} s") from None
    import trio
    with trio.move_on_after(seconds):
        return await awaitable
    raise TimeoutError(f"sync() took longer than {seconds} s")
