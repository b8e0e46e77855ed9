"""Structured concurrency on the worker: tasks that launch tasks, async
tasks, cancellation that stops work, task groups, deadlines, and failures
that follow the tree."""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import MutableMapping

import pytest
import trio

import trioflow
from trioflow import (Client, Future, CancelledError, checkpoint, get_client, get_worker,
                      local_client, rejoin, secede, worker_client)
from _tasks import fib_worker_client
from _util import wait_until


def _worker(client):
    [address] = client.nthreads()
    return address


def _executing(client):
    return sum(client.run(lambda dask_worker: len(dask_worker.executing)).values())


def _slots(client):
    return client.run(lambda dask_worker: (dask_worker.state.busy_slots,
                                           dask_worker.state.async_busy))


@pytest.fixture
def one_thread():
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        yield client


# ---------------------------------------------------------------- 1. tasks that launch tasks

def _client_identity():
    client = get_client()
    return id(client), client.scheduler_address


def test_get_client_is_one_client_per_worker_on_the_same_scheduler(one_thread):
    results = one_thread.gather(one_thread.map(lambda i: _client_identity(), range(5)))
    assert len({ident for ident, _ in results}) == 1
    assert {address for _, address in results} == {one_thread.scheduler_address}


def test_get_worker_gives_the_running_worker(one_thread):
    def who():
        worker = get_worker()
        return worker.address, worker.name, isinstance(worker.data, MutableMapping)

    assert one_thread.submit(who).result() == (_worker(one_thread), 0, True)


def test_get_worker_outside_a_task_raises():
    with pytest.raises(ValueError, match="no worker"):
        get_worker()


def fib(n):
    if n < 2:
        return n
    with worker_client() as client:
        a, b = client.submit(fib, n - 1), client.submit(fib, n - 2)
        return a.result() + b.result()


def test_recursive_fib_on_one_thread_does_not_deadlock(one_thread):
    assert one_thread.submit(fib, 12).result(timeout=50) == 144


@pytest.mark.timeout(120)
def test_recursive_fib_on_one_worker_process():
    with Client(processes=True, n_workers=1, threads_per_worker=1) as client:
        assert client.submit(fib_worker_client, 10).result(timeout=90) == 55


def test_task_submits_fifty_tasks_and_gathers_them(one_thread):
    def fan_out(n):
        client = get_client()
        secede()
        total = sum(client.gather(client.map(lambda x: x * 2, range(n), pure=False)))
        rejoin()
        return total

    assert one_thread.submit(fan_out, 50).result(timeout=30) == 2 * sum(range(50))


def test_local_client_is_worker_client(one_thread):
    assert local_client is worker_client

    def nested():
        with local_client() as client:
            return client.submit(lambda: 7).result()

    assert one_thread.submit(nested).result(timeout=20) == 7


def test_seceded_task_gives_its_slot_to_another_task(one_thread, tmp_path):
    marker = tmp_path / "other-ran"

    def waits_for_other():
        secede()
        deadline = time.monotonic() + 20
        while not marker.exists():  # the other task needs the only slot
            if time.monotonic() > deadline:
                return "other task never ran"
            time.sleep(0.01)
        rejoin()
        return "ok"

    first = one_thread.submit(waits_for_other)
    wait_until(lambda: _executing(one_thread) == 1)
    second = one_thread.submit(marker.write_text, "x")
    assert first.result(timeout=30) == "ok"
    assert second.result() == 1
    assert _slots(one_thread) == {_worker(one_thread): (0, 0)}


def test_dask_collections_computed_inside_a_task_run_on_the_cluster(one_thread):
    dask = pytest.importorskip("dask")

    def inner():
        return get_worker().address

    def outer():
        with worker_client():
            return dask.delayed(inner)().compute()

    assert one_thread.submit(outer).result(timeout=30) == _worker(one_thread)


# ---------------------------------------------------------------- 2. async tasks

async def _where_am_i():
    return threading.current_thread().name


def test_async_task_runs_in_the_workers_loop_not_a_thread(one_thread):
    sync_thread = one_thread.submit(lambda: threading.current_thread().name).result()
    async_thread = one_thread.submit(_where_am_i).result()
    assert sync_thread.startswith("trioflow-task")
    assert not async_thread.startswith("trioflow-task")


async def afib(n):
    if n < 2:
        return n
    client = get_client()
    a, b = client.submit(afib, n - 1), client.submit(afib, n - 2)
    return await a + await b


def test_async_task_awaits_the_async_client_inside(one_thread):
    assert one_thread.submit(afib, 10).result(timeout=30) == 55


async def _rendezvous(n):
    """Finishes only once ``n`` copies are running at the same time."""
    worker = get_worker()
    state = worker.__dict__.setdefault("_rendezvous", {"count": 0, "all_here": trio.Event()})
    state["count"] += 1
    if state["count"] == n:
        state["all_here"].set()
    await state["all_here"].wait()
    await trio.sleep(0.2)
    return 1


def test_200_async_tasks_run_at_once_on_a_one_thread_worker(one_thread):
    futures = one_thread.map(_rendezvous, [200] * 200, pure=False)
    assert sum(one_thread.gather(futures)) == 200
    threads = one_thread.run(lambda dask_worker: dask_worker._threads.busy())
    assert threads == {_worker(one_thread): 0}


# ---------------------------------------------------------------- 3. cancellation that stops work

async def _sleep_then_mark(path):
    try:
        await trio.sleep(60)
    finally:
        with open(path, "w") as f:
            f.write("finally ran")


def test_cancel_interrupts_running_async_task(one_thread, tmp_path):
    marker = tmp_path / "finally"
    future = one_thread.submit(_sleep_then_mark, str(marker))
    wait_until(lambda: _executing(one_thread) == 1)
    future.cancel()
    wait_until(marker.exists, message="the task's finally block ran")
    assert future.cancelled()
    with pytest.raises(CancelledError):
        future.result()
    wait_until(lambda: _slots(one_thread) == {_worker(one_thread): (0, 0)})
    assert one_thread.submit(lambda: 5).result(timeout=10) == 5


def _spin_with_checkpoints(path):
    n = 0
    while True:
        checkpoint()
        n += 1
        with open(path, "w") as f:
            f.write(str(n))
        time.sleep(0.005)


def test_cancel_stops_sync_task_at_its_next_checkpoint(one_thread, tmp_path):
    progress = tmp_path / "progress"
    future = one_thread.submit(_spin_with_checkpoints, str(progress))
    wait_until(progress.exists)
    future.cancel()
    wait_until(lambda: _executing(one_thread) == 0, message="the thread left the task")
    stopped_at = progress.read_text()
    assert one_thread.submit(lambda: 6).result(timeout=10) == 6  # the slot is free again
    assert progress.read_text() == stopped_at
    assert _slots(one_thread) == {_worker(one_thread): (0, 0)}


def test_checkpoint_outside_a_task_does_nothing():
    checkpoint()


def test_closing_a_client_cancels_the_tasks_only_it_wanted(tmp_path):
    marker = tmp_path / "finally"
    with Client(processes=False, n_workers=1, threads_per_worker=1) as owner:
        other = Client(owner.scheduler_address)
        try:
            held = other.submit(_sleep_then_mark, str(marker))  # noqa: F841 - keeps it wanted
            wait_until(lambda: _executing(owner) == 1)
        finally:
            other.close()
        wait_until(marker.exists, message="closing the client cancelled its task")
        wait_until(lambda: _executing(owner) == 0)


def test_force_cancel_cancels_for_every_client(one_thread, tmp_path):
    marker = tmp_path / "finally"
    with Client(one_thread.scheduler_address) as other:
        mine = one_thread.submit(_sleep_then_mark, str(marker), key="shared-sleeper")
        wait_until(lambda: _executing(one_thread) == 1)
        theirs = Future("shared-sleeper", other)
        wait_until(lambda: one_thread.run_on_scheduler(
            lambda dask_scheduler: len(dask_scheduler.state.tasks["shared-sleeper"].who_wants)) == 2)
        one_thread.cancel([mine], force=True)
        wait_until(marker.exists)
        wait_until(theirs.cancelled, message="the other client's future was cancelled too")


# ---------------------------------------------------------------- 4. structured shutdown

def _ignores_cancel_for(path, seconds):
    with open(path, "w") as f:
        f.write("started")
    time.sleep(seconds)
    return 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_worker_close_cancels_async_and_abandons_stuck_sync_with_a_log(tmp_path, caplog):
    marker = tmp_path / "finally"
    started = tmp_path / "started"
    async with trioflow.Scheduler(address="inproc://structured-close") as scheduler:
        async with Client(scheduler.address, asynchronous=True) as client:
            worker = trioflow.Worker(scheduler.address, nthreads=1)
            async with worker:
                running = [client.submit(_sleep_then_mark, str(marker)),  # noqa: F841
                           client.submit(_ignores_cancel_for, str(started), 3.0)]
                with trio.fail_after(10):
                    while not (started.exists() and len(worker.executing) == 2):
                        await trio.sleep(0.01)
                with caplog.at_level(logging.WARNING, logger="trioflow.worker"):
                    pass  # leaving the block closes the worker
            assert worker.status == "closed"
            assert marker.read_text() == "finally ran"
            assert any("abandoned" in r.getMessage() for r in caplog.records)


# ---------------------------------------------------------------- 5. task groups

async def _sleep_long(path):
    with open(path + ".started", "a") as f:
        f.write("x")
    try:
        await trio.sleep(60)
    finally:
        with open(path, "a") as f:
            f.write("x")


def _fail(path):
    raise ValueError("third task failed")


def test_task_group_third_task_fails_while_others_run(tmp_path):
    cancelled = tmp_path / "cancelled"
    cancelled.write_text("")
    with Client(processes=False, n_workers=1, threads_per_worker=2) as client:
        with pytest.raises(ExceptionGroup) as info:
            with client.task_group() as tg:
                first = tg.submit(_sleep_long, str(cancelled))
                second = tg.submit(_sleep_long, str(cancelled))
                wait_until(lambda: _executing(client) == 2)
                tg.submit(_fail, str(cancelled))
        [error] = info.value.exceptions
        assert isinstance(error, ValueError) and "third task failed" in str(error)
        wait_until(lambda: cancelled.read_text() == "xx", message="both others were cancelled")
        assert first.cancelled() and second.cancelled()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_async_task_group_raises_real_errors_and_cancels_the_rest(tmp_path, anyio_backend):
    import anyio
    cancelled = tmp_path / "cancelled"
    cancelled.write_text("")
    async with Client(processes=False, n_workers=1, threads_per_worker=1,
                      asynchronous=True) as client:
        with pytest.raises(ExceptionGroup) as info:
            async with client.task_group() as tg:
                tg.submit(_sleep_long, str(cancelled))
                # Only a task that has started has a finally to run: with one
                # thread, _fail could otherwise run first and the cancel would
                # find _sleep_long still queued.
                with anyio.fail_after(10):
                    while not os.path.exists(f"{cancelled}.started"):
                        await anyio.sleep(0.01)
                tg.submit(_fail, str(cancelled))
        assert [type(e) for e in info.value.exceptions] == [ValueError]
        with anyio.fail_after(10):
            while cancelled.read_text() != "x":
                await anyio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_cancelling_the_enclosing_scope_cancels_the_groups_remote_tasks(
        tmp_path, anyio_backend):
    import anyio
    cancelled = tmp_path / "cancelled"
    cancelled.write_text("")
    async with Client(processes=False, n_workers=1, threads_per_worker=1,
                      asynchronous=True) as client:
        with anyio.move_on_after(0.5):
            async with client.task_group() as tg:
                future = tg.submit(_sleep_long, str(cancelled))
        with anyio.fail_after(10):
            while not future.cancelled():
                await anyio.sleep(0.01)
            while cancelled.read_text() != "x":
                await anyio.sleep(0.01)


# ---------------------------------------------------------------- 6. deadlines

async def _sleeps(seconds):
    await trio.sleep(seconds)
    return seconds


def test_task_past_its_deadline_errs_with_timeout_error(one_thread):
    with pytest.raises(trioflow.TimeoutError, match="timeout"):
        one_thread.submit(_sleeps, 30, timeout=0.2).result(timeout=20)
    with pytest.raises(TimeoutError):  # also the builtin
        one_thread.submit(_spin_with_checkpoints, os.devnull, timeout=0.2).result(timeout=20)
    assert _slots(one_thread) == {_worker(one_thread): (0, 0)}


def _slow_first_time(path):
    first = not os.path.exists(path)
    with open(path, "a") as f:
        f.write("x")
    if first:
        for _ in range(3000):
            checkpoint()
            time.sleep(0.01)
    return "second run"


def test_deadline_counts_as_a_failure_for_retries(one_thread, tmp_path):
    attempts = tmp_path / "attempts"
    future = one_thread.submit(_slow_first_time, str(attempts), timeout=0.3, retries=1)
    assert future.result(timeout=30) == "second run"
    assert attempts.read_text() == "xx"


def test_map_accepts_timeout(one_thread):
    futures = one_thread.map(_sleeps, [0, 30], timeout=0.3)
    assert futures[0].result(timeout=10) == 0
    with pytest.raises(trioflow.TimeoutError):
        futures[1].result(timeout=20)


# ---------------------------------------------------------------- 7. failures follow the tree

async def _machinery_breaks():
    raise RuntimeError("a bug in the worker's own machinery")


def test_worker_machinery_failure_closes_that_worker_and_work_moves(tmp_path):
    with Client(processes=False, n_workers=2, threads_per_worker=1) as client:
        client.wait_for_workers(2)
        doomed, survivor = sorted(client.nthreads())
        client.run(lambda dask_worker: dask_worker.nursery.start_soon(_machinery_breaks),
                   workers=[doomed])
        wait_until(lambda: list(client.nthreads()) == [survivor],
                   message="the broken worker closed and left the scheduler")
        futures = client.map(lambda x: x + 1, range(20))
        assert client.gather(futures) == list(range(1, 21))


def test_user_task_exception_only_errs_its_future(one_thread):
    def bad():
        raise KeyError("user error")

    with pytest.raises(KeyError):
        one_thread.submit(bad).result()
    assert one_thread.submit(lambda: 3).result() == 3
    assert list(one_thread.nthreads()) == [_worker(one_thread)]
