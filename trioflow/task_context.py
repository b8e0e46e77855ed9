"""What a task can do about where it runs: ``get_worker``, ``get_client``,
``secede``/``rejoin``, ``worker_client`` (and its older name
``local_client``), and ``checkpoint``.

Sync tasks run in threads and reach the worker's loop through trio's
``from_thread``; ``async def`` tasks run in the worker's loop and call it
directly.
"""
from __future__ import annotations

import trio

from trioflow.server.context import current_task


def _context():
    ctx = current_task()
    if ctx is None:
        raise ValueError("not inside a trioflow task: no worker found")
    return ctx


def _in_worker_loop(ctx) -> bool:
    try:
        return trio.lowlevel.current_trio_token() is ctx.worker.trio_token
    except RuntimeError:
        return False


def get_worker():
    """The Worker running the current task."""
    return _context().worker


def get_client(address=None, timeout=None, resolve_address=True):
    """Inside a task: a client connected to the same scheduler (the same client
    object for every task on that worker).  Elsewhere: the default client."""
    ctx = current_task()
    if ctx is None:
        from trioflow.client.client import default_client
        return default_client()
    worker = ctx.worker
    if worker.client is not None:
        return worker.client
    if _in_worker_loop(ctx):
        raise RuntimeError("the worker's client is not ready yet")  # async tasks get it made first
    return trio.from_thread.run(worker.get_client_async, trio_token=worker.trio_token)


def secede():
    """Give the current task's execution slot back to the worker, so other
    tasks can run while this one waits (e.g. on tasks it submitted).  The
    task keeps running; ``rejoin()`` takes a slot again."""
    ctx = _context()
    if _in_worker_loop(ctx):
        ctx.worker.secede_task(ctx.key)
    else:
        trio.from_thread.run_sync(ctx.worker.secede_task, ctx.key,
                                  trio_token=ctx.worker.trio_token)


def rejoin():
    """Wait for a free execution slot after ``secede()``.  In an ``async def``
    task this returns an awaitable: ``await rejoin()``."""
    ctx = _context()
    if _in_worker_loop(ctx):
        return ctx.worker.rejoin_task(ctx.key)
    trio.from_thread.run(ctx.worker.rejoin_task, ctx.key, trio_token=ctx.worker.trio_token)


def checkpoint():
    """A point where a running task stops if its future was cancelled (or its
    deadline passed): raises inside the task, which then ends without a result.
    Call it in long loops of sync tasks; ``async def`` tasks are cancelled at
    any ``await`` and need it only in CPU-bound loops."""
    ctx = current_task()
    if ctx is not None and ctx.execution.cancelled:
        from trioflow.server.worker import TaskCancelled
        raise TaskCancelled(f"task {ctx.key!r} was cancelled")


class worker_client:
    """``with worker_client() as client:`` secedes on entry, gives the worker's
    client, and rejoins on exit: a task can submit and gather other tasks
    without holding one of the worker's slots while it waits.  ``async with``
    in ``async def`` tasks."""

    def __init__(self, timeout=None, separate_thread=True):
        self.timeout = timeout
        self._dask_config = None

    def _use_for_dask(self, client):
        # dask collections computed inside the block run on the cluster
        import sys
        if "dask" in sys.modules:
            import dask
            self._dask_config = dask.config.set(scheduler=client.get)

    def _restore_dask(self):
        if self._dask_config is not None:
            self._dask_config.__exit__(None, None, None)
            self._dask_config = None

    def __enter__(self):
        client = get_client()
        secede()
        self._use_for_dask(client)
        return client

    def __exit__(self, *exc_info):
        self._restore_dask()
        rejoin()

    async def __aenter__(self):
        ctx = _context()
        client = await ctx.worker.get_client_async()
        secede()
        return client

    async def __aexit__(self, *exc_info):
        await rejoin()


local_client = worker_client
