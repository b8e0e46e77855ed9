"""A task's client: ``get_client`` and ``worker_client`` (and its older name
``local_client``), re-exported by ``trioflow.task_context``.

Every task on one worker shares one client, which the worker connects on
first use with the client factory it was given (``client.client_for_worker``,
registered by ``trioflow/__init__``): this module asks the worker for it and
never builds a client itself.
"""
from __future__ import annotations

import sys

import trio

from trioflow.client.current import default_client, running_client_of
from trioflow.server.context import current_task
from trioflow.server.task_api import in_worker_loop, rejoin, secede, task_context


def get_client(address=None, timeout=None, resolve_address=True):
    """Inside a task: a client connected to the same scheduler (the same client
    object for every task on that worker).  Elsewhere: the default client."""
    ctx = current_task()
    if ctx is None:
        return default_client()
    worker = ctx.worker
    if worker.client is not None:
        return worker.client
    if in_worker_loop(ctx):
        raise RuntimeError("the worker's client is not ready yet")  # async tasks get it made first
    return trio.from_thread.run(worker.get_client_async, trio_token=worker.trio_token)


def client_for_unpickled_future(address):
    """The client a Future unpickled here belongs to: a running one connected
    to its scheduler, else the task's client, else the default one."""
    client = running_client_of(address)
    if client is not None:
        return client
    try:
        return get_client()
    except Exception:
        return default_client()


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
        client = await task_context().worker.get_client_async()
        secede()
        return client

    async def __aexit__(self, *exc_info):
        await rejoin()


local_client = worker_client
