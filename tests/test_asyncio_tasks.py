"""asyncio code inside tasks and actors, and the servers under asyncio.run.

``async def`` tasks and actor methods that use asyncio run on an asyncio
side loop of the worker's trio loop, next to trio and anyio tasks; cancelling a future cancels its asyncio task at once.  Scheduler,
Worker, Nanny and LocalCluster work inside ``asyncio.run``.
"""

import asyncio
import threading

import pytest
import trio

from trioflow import Client, LocalCluster, Nanny, Scheduler, Worker
from _asyncio_tasks import (
    AsyncioGate,
    anyio_triple,
    asyncio_fails,
    asyncio_gather_sum,
    asyncio_sleep_inc,
    asyncio_until_cancelled,
    asyncio_wait_for,
    trio_double,
    trio_or_asyncio,
    trio_then_asyncio,
)
from _tasks import inc
from _util import wait_until


@pytest.fixture(params=["processes", "threads"])
def client(request, check_leaks):
    """A blocking client on one worker of 2 slots: a worker process under a
    nanny, or a worker in the client's loop thread (processes=False)."""
    with Client(processes=request.param == "processes", n_workers=1, threads_per_worker=2,
                dashboard_address=None) as client:
        client.wait_for_workers(1, timeout=30)
        yield client


# ------------------------------------------------------------------ tasks


def test_asyncio_sleep_gather_and_wait_for_in_tasks(client):
    assert client.submit(asyncio_sleep_inc, 1).result(timeout=20) == 2
    assert client.submit(asyncio_gather_sum, 10).result(timeout=20) == 45
    assert client.submit(asyncio_wait_for, 7).result(timeout=20) == 7
    assert client.gather(client.map(asyncio_sleep_inc, range(20))) == list(range(1, 21))


def test_asyncio_trio_anyio_and_sync_tasks_side_by_side(client):
    futures = [client.submit(asyncio_sleep_inc, 1), client.submit(trio_double, 2),
               client.submit(anyio_triple, 3), client.submit(inc, 4),
               client.submit(asyncio_gather_sum, 4)]
    assert client.gather(futures) == [2, 4, 9, 5, 6]


def test_asyncio_task_error_keeps_its_type_and_traceback(client):
    future = client.submit(asyncio_fails, "broken on purpose")
    with pytest.raises(ValueError, match="broken on purpose") as info:
        future.result(timeout=20)
    assert info.traceback[-1].name == "asyncio_fails"
    assert client.submit(asyncio_sleep_inc, 0).result(timeout=20) == 1


def test_cancel_interrupts_running_asyncio_task(client, tmp_path):
    started, cancelled = tmp_path / "started", tmp_path / "cancelled"
    future = client.submit(asyncio_until_cancelled, str(started), str(cancelled))
    wait_until(started.exists, timeout=20, message="the asyncio task started")
    future.cancel()
    wait_until(cancelled.exists, timeout=10, message="CancelledError reached the asyncio task")
    assert future.cancelled()
    # both slots are free again
    assert client.gather(client.map(asyncio_sleep_inc, range(2), pure=False)) == [1, 2]


def test_task_mixing_trio_then_asyncio_gets_a_clear_error(client):
    with pytest.raises(RuntimeError, match="one loop, chosen by its first await"):
        client.submit(trio_then_asyncio).result(timeout=20)


# ------------------------------------------------------------------ actors


def test_actor_asyncio_event_made_in_init(client):
    gate = client.submit(AsyncioGate, actor=True).result(timeout=20)
    waiting = gate.wait_open()
    assert gate.open().result(timeout=20) == 1
    assert waiting.result(timeout=20) == 1


def test_actor_asyncio_gather(client):
    gate = client.submit(AsyncioGate, actor=True).result(timeout=20)
    assert gate.gather_squares(5).result(timeout=20) == [0, 1, 4, 9, 16]


# ------------------------------------------------------------------ closing


def test_closing_the_cluster_waits_for_asyncio_cleanup(check_leaks, tmp_path):
    started, cancelled = tmp_path / "started", tmp_path / "cancelled"
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        future = client.submit(asyncio_until_cancelled, str(started), str(cancelled), 0.2)
        wait_until(started.exists, timeout=20, message="the asyncio task started")
    # its cleanup ran to the end before close returned
    assert cancelled.exists()
    del future


# ------------------------------------------------------------------ servers under asyncio


def test_scheduler_worker_client_under_asyncio_run(check_leaks):
    async def main():
        async with Scheduler() as s, Worker(s.address, nthreads=2) as w, \
                Client(s.address, asynchronous=True) as c:
            assert w.address in (await c.scheduler_info())["workers"]
            assert await c.submit(asyncio_sleep_inc, 1) == 2
            assert await c.submit(trio_double, 2) == 4
            assert await c.submit(inc, 3) == 4
            gate = await c.submit(AsyncioGate, actor=True)
            waiting = gate.wait_open()
            assert await gate.open() == 1
            assert await waiting == 1
        return s.status, w.status

    assert asyncio.run(main()) == ("closed", "closed")


def test_cancel_asyncio_task_from_asyncio_client(check_leaks, tmp_path):
    started, cancelled = tmp_path / "started", tmp_path / "cancelled"

    async def main():
        async with Scheduler() as s, Worker(s.address) as w, \
                Client(s.address, asynchronous=True) as c:
            future = c.submit(asyncio_until_cancelled, str(started), str(cancelled))
            while not started.exists():
                await asyncio.sleep(0.01)
            await future.cancel()
            while not cancelled.exists():
                await asyncio.sleep(0.01)
            assert await c.submit(asyncio_sleep_inc, 1) == 2
            await w.close()
            assert w.status == "closed"

    asyncio.run(asyncio.wait_for(main(), 30))


def test_nanny_under_asyncio_run(check_leaks):
    async def main():
        async with Scheduler() as s, Nanny(s.address, nthreads=1) as n, \
                Client(s.address, asynchronous=True) as c:
            await c.wait_for_workers(1)
            assert await c.submit(asyncio_gather_sum, 5) == 10
            pid = n.pid
        return pid, n.status

    pid, status = asyncio.run(main())
    assert status == "closed"
    import psutil
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.parametrize("processes", [False, True])
def test_local_cluster_asynchronous_under_asyncio(check_leaks, processes):
    async def main():
        async with LocalCluster(n_workers=1, threads_per_worker=1, processes=processes,
                                asynchronous=True) as cluster, \
                Client(cluster, asynchronous=True) as c:
            assert await c.submit(asyncio_wait_for, 3) == 3
            assert await c.submit(anyio_triple, 3) == 9
        return cluster.status

    assert asyncio.run(main()) == "closed"


def test_server_threads_are_gone_after_asyncio_run(check_leaks):
    before = set(threading.enumerate())

    async def main():
        async with Scheduler() as s, Worker(s.address):
            pass

    asyncio.run(main())
    wait_until(lambda: not [t for t in set(threading.enumerate()) - before
                            if t.name == "trioflow-loop"], timeout=10,
               message="trioflow's loop thread stopped")


# ------------------------------------------------------------------ under trio


def test_worker_in_trio_run_runs_asyncio_tasks_on_a_side_loop_it_then_stops(check_leaks):
    async def main():
        async with Scheduler() as s, Worker(s.address) as w, \
                Client(s.address, asynchronous=True) as c:
            assert await c.submit(trio_double, 2) == 4
            assert await c.submit(anyio_triple, 2) == 6
            assert await c.submit(asyncio_sleep_inc, 1) == 2
            assert [t for t in threading.enumerate() if t.name == "trioflow-asyncio"]
            assert w.status == "running"

    trio.run(main)
    # the side loop belonged to that trio run
    assert not [t for t in threading.enumerate() if t.name == "trioflow-asyncio"]


def test_a_function_keeps_the_loop_its_first_run_chose(client, tmp_path):
    # first runs choose (asyncio, trio); later runs take the remembered path,
    # including cancellation of a whole-asyncio run
    assert client.submit(asyncio_sleep_inc, 1, pure=False).result(timeout=20) == 2
    assert client.submit(trio_double, 1, pure=False).result(timeout=20) == 2
    assert client.gather(client.map(asyncio_sleep_inc, range(10), pure=False)) == list(range(1, 11))
    assert client.gather(client.map(trio_double, range(10), pure=False)) == [2 * i for i in range(10)]
    for attempt in range(2):
        started, cancelled = tmp_path / f"started{attempt}", tmp_path / f"cancelled{attempt}"
        future = client.submit(asyncio_until_cancelled, str(started), str(cancelled), pure=False)
        wait_until(started.exists, timeout=20, message="the asyncio task started")
        future.cancel()
        wait_until(cancelled.exists, timeout=10, message="CancelledError reached the asyncio task")
    with pytest.raises(RuntimeError, match="earlier run"):
        client.submit(trio_or_asyncio, "trio", pure=False).result(timeout=20)  # chooses trio
        client.submit(trio_or_asyncio, "asyncio", pure=False).result(timeout=20)


def test_worker_process_hosts_asyncio_with_trio_client(check_leaks):
    async def main():
        async with Scheduler() as s, Nanny(s.address, nthreads=1), \
                Client(s.address, asynchronous=True) as c:
            await c.wait_for_workers(1)
            assert await c.submit(asyncio_sleep_inc, 1) == 2
            assert await c.submit(trio_double, 1) == 2

    trio.run(main)
