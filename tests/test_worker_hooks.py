"""What a worker is given instead of importing the layers above it: the
factory of the client its tasks share, and the hook that hands out actors;
and the cluster factory ``Client()`` uses without an address."""
from __future__ import annotations

import pytest
import trio

from trioflow import Client, Scheduler, Worker, get_client
from trioflow.client.local_cluster import local_cluster, set_local_cluster
from trioflow.comm.inproc import new_address
from trioflow.server.worker_hooks import WorkerHooks, default_hooks

pytestmark = pytest.mark.anyio


def _client_name():
    return get_client().name


async def _client_name_async():
    return get_client().name


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_tasks_share_the_client_the_worker_factory_makes(anyio_backend):
    made = []

    def factory(worker):
        client = Client(worker.scheduler_address, asynchronous=True, set_as_default=False,
                        token=worker.token, name=f"from-the-factory-{len(made)}")
        made.append(client)
        return client

    hooks = WorkerHooks(client_factory=factory, actor_handle=default_hooks().actor_handle)
    with trio.fail_after(30):
        async with Scheduler(address=new_address()) as scheduler:
            async with Worker(scheduler.address, nthreads=1, hooks=hooks):
                async with Client(scheduler.address, asynchronous=True) as client:
                    names = await client.gather([client.submit(_client_name, pure=False),
                                                 client.submit(_client_name_async, pure=False)])
        assert names == ["from-the-factory-0", "from-the-factory-0"]
        assert len(made) == 1
        assert made[0].status == "closed"  # the worker closed the client it entered


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_worker_without_a_client_factory_says_so_in_the_task(anyio_backend):
    with trio.fail_after(30):
        async with Scheduler(address=new_address()) as scheduler:
            async with Worker(scheduler.address, nthreads=1, hooks=WorkerHooks()):
                async with Client(scheduler.address, asynchronous=True) as client:
                    with pytest.raises(RuntimeError, match="has no client factory"):
                        await client.submit(_client_name)


def test_client_without_address_starts_the_registered_cluster():
    registered = local_cluster()
    asked = []

    def factory(**kwargs):
        asked.append(kwargs)
        return registered(**kwargs)

    set_local_cluster(factory)
    try:
        with Client(n_workers=1, threads_per_worker=1, processes=False,
                    dashboard_address=None) as client:
            assert client.submit(_client_name).result(timeout=10) == client.submit(
                _client_name).result(timeout=10)
            assert client.cluster is not None
    finally:
        set_local_cluster(registered)
    assert asked == [{"n_workers": 1, "threads_per_worker": 1, "processes": False,
                      "dashboard_address": None}]
