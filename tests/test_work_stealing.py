"""Work stealing through the public API: a worker that joins while a
backlog sits on another one is given part of it, results stay right, and
``distributed.scheduler.work-stealing: False`` turns it off."""
from __future__ import annotations

import time

import dask
import pytest
import trio

import trioflow
from trioflow import Client


def _slow_add(i, x):
    time.sleep(0.2)
    return i + x


async def _backlog_then_join(n_tasks: int):
    """A one-thread worker holding ``n_tasks`` non-root tasks (they depend on
    data scattered to it, so they are assigned at once, not queued), then a
    second worker joins; returns what the newcomer ran and the results."""
    async with trioflow.Scheduler(address="inproc://") as scheduler:
        async with trioflow.Worker(scheduler.address, nthreads=1) as first:
            async with Client(scheduler.address, asynchronous=True) as client:
                [x] = await client.scatter([10], workers=[first.address])
                futures = client.map(_slow_add, range(n_tasks), x=x)
                with trio.fail_after(10):
                    while len(scheduler.state.workers[first.address].processing) < n_tasks:
                        await trio.sleep(0.01)
                async with trioflow.Worker(scheduler.address, nthreads=1) as second:
                    ran_on_second = set()
                    with trio.fail_after(30):
                        while len(ran_on_second) < n_tasks and not all(f.done() for f in futures):
                            joined = scheduler.state.workers.get(second.address)
                            if joined is not None:
                                ran_on_second |= {ts.key for ts in joined.processing}
                            await trio.sleep(0.02)
                    results = await client.gather(futures)
                    return ran_on_second, results, scheduler.state.steals, futures


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_worker_that_joins_mid_run_is_given_part_of_the_backlog(anyio_backend):
    ran_on_second, results, steals, futures = await _backlog_then_join(20)
    assert results == [i + 10 for i in range(20)]
    # a fair share: the newcomer took several of the 19 that had not started
    assert steals >= 5
    assert len(ran_on_second) >= 5
    assert ran_on_second <= {f.key for f in futures}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_work_stealing_can_be_turned_off(anyio_backend):
    with dask.config.set({"distributed.scheduler.work-stealing": False}):
        ran_on_second, results, steals, _ = await _backlog_then_join(6)
    assert results == [i + 10 for i in range(6)]
    assert steals == 0 and ran_on_second == set()


def test_stealing_moves_nothing_that_has_started_or_is_pinned():
    """The blocking client's view: tasks pinned with ``workers=`` stay on
    their worker however long the backlog, and every result is right."""
    with Client(processes=False, n_workers=2, threads_per_worker=1) as client:
        first, second = sorted(client.nthreads())
        pinned = client.map(_slow_add, range(8), x=1, workers=[first], pure=False)
        on_second = set()

        def assigned_to_second(dask_scheduler):
            return [ts.key for ts in dask_scheduler.state.workers[second].processing]

        deadline = time.monotonic() + 30
        while not all(f.done() for f in pinned) and time.monotonic() < deadline:
            on_second |= set(client.run_on_scheduler(assigned_to_second))
            time.sleep(0.05)
        assert client.gather(pinned) == [i + 1 for i in range(8)]
        assert not on_second & {f.key for f in pinned}
        assert client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.state.steals) == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_retiring_a_busy_worker_moves_its_data_and_work_and_counts_no_deaths(anyio_backend):
    async with trioflow.Scheduler(address="inproc://") as scheduler:
        async with trioflow.Worker(scheduler.address, nthreads=1) as leaving, \
                trioflow.Worker(scheduler.address, nthreads=1) as staying:
            async with Client(scheduler.address, asynchronous=True) as client:
                [x] = await client.scatter([10], workers=[leaving.address])
                done_early = client.submit(_slow_add, -1, x, workers=[leaving.address])
                await done_early  # a result only the leaving worker holds
                futures = client.map(_slow_add, range(12), x=x, workers=[leaving.address],
                                     allow_other_workers=True)
                with trio.fail_after(10):
                    while not scheduler.state.workers[leaving.address].processing:
                        await trio.sleep(0.01)
                retired = await client.retire_workers([leaving.address])
                assert list(retired) == [leaving.address]
                assert list(scheduler.state.workers) == [staying.address]
                assert await client.gather(futures) == [i + 10 for i in range(12)]
                assert await done_early == 9  # copied before the worker closed
                assert all(not scheduler.state.tasks[f.key].deaths
                           for f in [x, done_early, *futures])
