"""The futures API through the asynchronous client, under trio and asyncio.

Every test runs twice, once per event loop (the ``anyio_backend`` fixture).
Under trio the client and an in-process cluster live in the test's own trio
run; under asyncio they live in trioflow's loop thread and are awaited from
asyncio.  The calls are the blocking client's (test_futures_api.py), awaited.
"""

import gc
import inspect
import io
import os
import pathlib
import threading
import traceback
import types

import anyio
import pytest
import sniffio

import trioflow
from trioflow import (
    CancelledError,
    Client,
    Future,
    LocalCluster,
    as_completed,
    fire_and_forget,
    wait,
)
from _util import async_client

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


# --- task functions (in-process workers import them from this module) ----------


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def double(x):
    return 2 * x


def total(values):
    return sum(values)


def divide(x, y):
    return x / y


def _parse_setting(text):
    return int(text)


def load_setting(text):
    return _parse_setting(text)


def wait_for_path(path, *dependencies):
    """Block (in a worker thread) until ``path`` exists."""
    import time

    deadline = time.monotonic() + 30
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.01)
    return True


def write_marker(path, *dependencies):
    pathlib.Path(path).write_text("ran")
    return path


def flaky_inc(counter_path, failures, x):
    counter = pathlib.Path(counter_path)
    attempts = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(attempts))
    if attempts <= failures:
        raise RuntimeError(f"flaky failure on attempt {attempts}")
    return x + 1


def where_am_i():
    return trioflow.get_worker().address


# --- helpers ------------------------------------------------------------------


async def until(predicate, timeout=10, message=None):
    """Poll ``predicate`` (sync or async) until truthy, or fail after ``timeout``."""
    with anyio.move_on_after(timeout):
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await anyio.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s: {message or predicate!r}")


async def task_count(client):
    return await client.run_on_scheduler(
        lambda dask_scheduler: len(dask_scheduler.state.tasks))


async def barrier(client):
    """Return once the scheduler handled everything this client sent before."""
    marker = client.submit(inc, 0, pure=False)
    await marker
    key = marker.key
    marker.release()
    del marker
    await until(lambda: _forgotten(client, key), message="barrier key forgotten")


async def _forgotten(client, key):
    if key in await client.who_has():
        return False
    return all(key not in keys for keys in (await client.has_what()).values())


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


# --- 1. the async faces -------------------------------------------------------


async def test_submit_and_await_futures():
    async with async_client() as c:
        assert c.asynchronous
        assert await c.submit(inc, 1) == 2
        future = c.submit(add, 1, y=10)
        assert await future == 11
        assert await future.result() == 11
        assert await future.result(timeout=10) == 11
        assert future.done() and future.status == "finished"
        chained = c.submit(inc, c.submit(double, future))
        assert await chained == 23


async def test_map_gather_and_scatter():
    async with async_client() as c:
        futures = c.map(inc, range(5))
        assert await c.gather(futures) == [1, 2, 3, 4, 5]
        assert await c.gather({"a": futures[0], "b": [futures[1], 7]}) == {"a": 1, "b": [2, 7]}
        assert await c.gather(futures[2]) == 3

        scattered = await c.scatter([10, 20, 30])
        assert all(isinstance(f, Future) for f in scattered)
        assert await c.gather(scattered) == [10, 20, 30]
        assert await c.submit(total, scattered) == 60

        by_name = await c.scatter({"x": 1, "y": 2})
        assert await c.gather(by_name) == {"x": 1, "y": 2}
        single = await c.scatter(b"payload", broadcast=True, hash=False)
        assert len((await c.who_has([single]))[single.key]) == 2
        assert await single == b"payload"


async def test_cluster_information_methods_are_awaitable():
    async with async_client() as c:
        await c.wait_for_workers(2, timeout=10)
        nthreads = await c.nthreads()
        assert sorted(nthreads.values()) == [2, 2]
        assert await c.ncores() == nthreads
        info = await c.scheduler_info()
        assert set(info["workers"]) == set(nthreads)
        future = c.submit(inc, 1)
        await future
        assert (await c.who_has([future]))[future.key]
        assert any(future.key in keys for keys in (await c.has_what()).values())
        assert await c.run(os.getpid) == {address: os.getpid() for address in nthreads}
        assert await c.run_on_scheduler(add, 1, 2) == 3
        assert c.dashboard_link is None


async def test_await_client_then_close():
    c = await async_client(n_workers=1)
    try:
        assert c.status == "running"
        assert await c.submit(inc, 41) == 42
    finally:
        await c.close()
    assert c.status == "closed"


async def test_local_cluster_asynchronous_with_client():
    async with LocalCluster(processes=False, asynchronous=True, n_workers=2,
                            threads_per_worker=1) as cluster:
        async with Client(cluster, asynchronous=True) as c:
            assert await c.submit(inc, 1) == 2
            assert len(await c.nthreads()) == 2
        assert cluster.status == "running"
        cluster_too = await LocalCluster(processes=False, asynchronous=True, n_workers=1)
        try:
            async with Client(cluster_too.scheduler_address, asynchronous=True) as c:
                assert await c.submit(inc, 2) == 3
        finally:
            await cluster_too.close()


@pytest.fixture
def running_cluster():
    """A blocking LocalCluster, already running when the test starts, that the
    test's async clients connect to by address.  In-process workers, but a
    network address: an inproc:// one is reachable only from the loop thread."""
    with LocalCluster(processes=False, protocol="ws", n_workers=2,
                      threads_per_worker=2) as cluster:
        yield cluster


async def test_client_by_address_to_a_running_cluster(running_cluster):
    address = running_cluster.scheduler_address
    async with Client(address, asynchronous=True) as first:
        async with Client(address, asynchronous=True, set_as_default=False) as second:
            mine = first.submit(inc, 5)
            theirs = second.submit(inc, 5)
            assert mine.key == theirs.key
            assert await mine == await theirs == 6
            assert len(await second.nthreads()) == 2
    # the cluster outlives the clients
    assert running_cluster.status == "running"


@pytest.fixture
def inproc_cluster():
    """A blocking in-process cluster: its servers live in trioflow's loop thread."""
    with LocalCluster(processes=False, n_workers=1, threads_per_worker=1) as cluster:
        yield cluster


async def test_inproc_cluster_of_another_loop_is_refused_clearly(anyio_backend, inproc_cluster):
    if anyio_backend != "trio":
        pytest.skip("asyncio clients run in the loop thread that serves inproc:// too")
    with pytest.raises(ValueError, match="from this event loop"):
        await Client(inproc_cluster.scheduler_address, asynchronous=True, timeout=5)


async def test_blocking_client_inside_trio_code_is_refused_clearly(anyio_backend):
    if anyio_backend != "trio":
        pytest.skip("under asyncio a blocking client runs in trioflow's loop thread")
    with pytest.raises(RuntimeError, match="asynchronous=True"):
        Client(processes=False, n_workers=1)


@pytest.fixture
def blocking_client(running_cluster):
    # made outside the test's event loop: blocking calls cannot run inside trio
    with Client(running_cluster, set_as_default=False) as client:
        yield client


async def test_blocking_client_methods_awaitable_with_asynchronous_keyword(blocking_client):
    c = blocking_client
    futures = c.map(inc, range(3))
    assert await c.gather(futures, asynchronous=True) == [1, 2, 3]
    scattered = await c.scatter([1, 2], asynchronous=True)
    assert await c.gather(scattered, asynchronous=True) == [1, 2]
    failing = c.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError):
        await c.gather(failing, asynchronous=True)
    await c.cancel([failing], asynchronous=True)
    assert failing.cancelled()
    assert await c.get({"x": (inc, 1)}, "x", asynchronous=True) == 2


# --- 2. errors and retries ----------------------------------------------------


async def test_exception_traceback_and_result_of_a_failed_task():
    async with async_client() as c:
        failing = c.submit(load_setting, "not a number")
        error = await failing.exception()
        assert isinstance(error, ValueError)
        tb = await failing.traceback(timeout=10)
        assert isinstance(tb, types.TracebackType)
        frames = traceback.format_tb(tb)
        assert "load_setting" in "".join(frames) and "_parse_setting" in frames[-1]
        with pytest.raises(ValueError) as info:
            await failing
        assert "_parse_setting" in "".join(traceback.format_tb(info.value.__traceback__))
        with pytest.raises(ValueError):
            await c.gather([failing])
        finishing = c.submit(inc, 1)
        assert await finishing.exception() is None
        assert await finishing.traceback() is None


async def test_retries_and_retry(tmp_path):
    async with async_client() as c:
        retried = c.submit(flaky_inc, str(tmp_path / "a"), 2, 1, retries=2)
        assert await retried == 2

        failing = c.submit(flaky_inc, str(tmp_path / "b"), 1, 2)
        assert isinstance(await failing.exception(), RuntimeError)
        await c.retry([failing])
        assert await failing == 3

        again = c.submit(flaky_inc, str(tmp_path / "c"), 1, 3)
        dependent = c.submit(inc, again)
        with pytest.raises(RuntimeError):
            await dependent
        await again.retry()
        assert await again == 4
        assert await dependent == 5


async def test_gather_errors_skip():
    async with async_client() as c:
        good = c.map(inc, range(2))
        bad = c.submit(divide, 1, 0)
        assert await c.gather([good[0], bad, good[1]], errors="skip") == [1, 2]
        with pytest.raises(ZeroDivisionError):
            await c.gather([good[0], bad])


# --- 3. cancellation and release -----------------------------------------------


async def test_cancel_and_cancelled_error(tmp_path):
    release = tmp_path / "release"
    async with async_client() as c:
        try:
            future = c.submit(wait_for_path, str(release))
            await future.cancel()
            assert future.cancelled() and future.done()
            with pytest.raises(CancelledError):
                await future
            with pytest.raises(CancelledError):
                await future.result()
            others = [c.submit(wait_for_path, str(release), i) for i in range(2)]
            await c.cancel(others, force=True)
            assert all(f.cancelled() for f in others)
            resubmitted = c.submit(wait_for_path, str(release))
            assert not resubmitted.cancelled()
        finally:
            release.touch()
        assert await resubmitted is True


async def test_cancelled_waiting_task_never_runs_and_dependents_are_cancelled(tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"
    async with async_client() as c:
        try:
            dependency = c.submit(wait_for_path, str(release))
            waiting = c.submit(write_marker, str(marker), dependency)
            downstream = c.submit(inc, c.submit(len, waiting))
            await waiting.cancel()
            await until(downstream.cancelled, message="downstream cancelled")
        finally:
            release.touch()
        assert await dependency is True
        assert await c.submit(wait_for_path, str(release), dependency) is True
        await barrier(c)
        assert not marker.exists()
        with pytest.raises(CancelledError):
            await downstream


async def test_release_and_dropping_futures_forget_keys():
    async with async_client() as c:
        assert await task_count(c) == 0
        future = c.submit(inc, 1)
        copy = Future(future.key, c)
        await future
        key = future.key
        future.release()
        await barrier(c)
        assert (await c.who_has([copy]))[key]
        del copy
        gc.collect()
        await until(lambda: _forgotten(c, key), message="key forgotten")
        await until(lambda: _count_is(c, 0), message="scheduler has no tasks")


async def _count_is(client, n):
    return await task_count(client) == n


# --- 4. waiting ---------------------------------------------------------------


async def test_wait_return_when_and_timeout(tmp_path):
    release = tmp_path / "release"
    async with async_client() as c:
        futures = c.map(inc, range(3))
        done, not_done = await wait(futures, timeout=10)
        assert done == set(futures) and not not_done
        try:
            blocked = c.submit(wait_for_path, str(release))
            quick = c.submit(inc, 10)
            done, not_done = await wait([blocked, quick], return_when="FIRST_COMPLETED")
            assert quick in done and blocked in not_done
            failing = c.submit(divide, 1, 0)
            done, not_done = await wait([blocked, failing], timeout=10,
                                        return_when="FIRST_EXCEPTION")
            assert done == {failing} and not_done == {blocked}
            with pytest.raises(trioflow.TimeoutError):
                await wait([blocked], timeout=0.1)
        finally:
            release.touch()
        assert await wait([blocked], timeout=10) == ({blocked}, set())


async def test_async_for_as_completed_in_completion_order(tmp_path):
    paths = [tmp_path / name for name in "abc"]
    async with async_client() as c:
        try:
            futures = [c.submit(wait_for_path, str(p)) for p in paths]
            seq = as_completed(futures)
            assert seq.count() == 3 and len(seq) == 3 and not seq.is_empty()
            order = []
            for index in (2, 0, 1):
                paths[index].touch()
                order.append(await seq.__anext__())
            assert order == [futures[2], futures[0], futures[1]]
            assert seq.is_empty()
            with pytest.raises(StopAsyncIteration):
                await seq.__anext__()
        finally:
            for p in paths:
                p.touch()


async def test_async_for_as_completed_with_results_and_adding():
    async with async_client() as c:
        seq = as_completed(c.map(inc, [1, 2]), with_results=True)
        results = []
        async for future, value in seq:
            results.append(value)
            if value < 10:
                seq.add(c.submit(double, future))
        assert sorted(results) == sorted([2, 4, 8, 16, 3, 6, 12])

        seq = as_completed()
        seq.update(c.map(inc, range(3)))
        assert seq.count() == 3
        assert sorted([await f async for f in seq]) == [1, 2, 3]
        assert seq.is_empty()
        good, bad = c.submit(inc, 1), c.submit(divide, 1, 0)
        with pytest.raises(ZeroDivisionError):
            async for _ in as_completed([good, bad], with_results=True):
                pass
        pairs = {f: v async for f, v in as_completed([good, bad], with_results=True,
                                                       raise_errors=False)}
        assert pairs[good] == 2 and isinstance(pairs[bad], ZeroDivisionError)


async def test_as_completed_next_batch():
    async with async_client() as c:
        futures = c.map(inc, range(4))
        await wait(futures)
        seq = as_completed(futures)
        seen = []
        while not seq.is_empty():
            seen.extend(await seq.next_batch(block=True))
        assert set(seen) == set(futures) and len(seen) == 4
        assert await seq.next_batch(block=False) == []


async def test_add_done_callback_runs_in_a_thread_once(tmp_path):
    release = tmp_path / "release"
    calls = []

    def callback(future):
        try:
            library = sniffio.current_async_library()
        except sniffio.AsyncLibraryNotFoundError:
            library = None
        calls.append((future, threading.current_thread(), library))

    async with async_client() as c:
        try:
            future = c.submit(wait_for_path, str(release))
            future.add_done_callback(callback)
        finally:
            release.touch()
        await future
        await until(lambda: len(calls) == 1, message="callback called")
        (called_with, thread, library), = calls
        assert called_with is future and library is None
        assert thread is not threading.main_thread()
        late = []
        future.add_done_callback(late.append)
        await until(lambda: late == [future], message="late callback called")
        assert len(calls) == 1


async def test_fire_and_forget_survives_the_client(tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"
    async with LocalCluster(processes=False, asynchronous=True, n_workers=2,
                            threads_per_worker=2) as cluster:
        try:
            async with Client(cluster, asynchronous=True, set_as_default=False) as c:
                dependency = c.submit(wait_for_path, str(release))
                fire_and_forget(c.submit(write_marker, str(marker), dependency))
                del dependency
                gc.collect()
                await barrier(c)
            assert not marker.exists()
        finally:
            release.touch()
        await until(marker.exists, message="fire-and-forget marker written")
        async with Client(cluster, asynchronous=True, set_as_default=False) as observer:
            await until(lambda: _count_is(observer, 0), message="tasks forgotten")


# --- 6. progress --------------------------------------------------------------


async def test_progress_is_awaitable(capsys):
    async with async_client() as c:
        futures = c.map(inc, range(5)) + [c.submit(divide, 1, 0)]
        following = trioflow.progress(futures, interval=0.02)
        assert inspect.isawaitable(following)
        await following
        assert all(f.done() for f in futures)
        last = capsys.readouterr().out.splitlines()[-1]
        assert last.startswith("progress: 100% | 6/6") and "1 erred" in last

        terminal = FakeTerminal()
        await trioflow.progress(c.map(inc, range(10, 13)), file=terminal, interval=0.02)
        text = terminal.getvalue()
        assert text.startswith("\r[") and "3/3" in text and text.endswith("\n")


# --- 8. cluster management ------------------------------------------------------


async def test_replicate_rebalance_and_restart(tmp_path):
    async with async_client() as c:
        worker_a, worker_b = sorted(await c.nthreads())
        future = c.submit(inc, 1, workers=[worker_a])
        await future
        await c.replicate([future], n=2)
        assert sorted((await c.who_has([future]))[future.key]) == [worker_a, worker_b]

        futures = c.map(inc, range(10, 20), workers=[worker_a])
        await wait(futures)
        await c.rebalance(futures)
        has_what = await c.has_what()
        assert has_what[worker_a] and has_what[worker_b]

        await c.restart()
        assert future.cancelled() and all(f.cancelled() for f in futures)
        with pytest.raises(CancelledError, match="restart"):
            await future
        await c.wait_for_workers(2, timeout=10)
        assert await c.submit(inc, 1) == 2


async def test_dask_collections_on_the_async_client():
    import dask

    async with async_client() as c:
        workers = set(await c.nthreads())
        computed = c.compute(dask.delayed(where_am_i)())
        assert isinstance(computed, Future)
        assert await computed in workers
        persisted = c.persist(dask.delayed(inc)(1))
        (future,) = persisted.__dask_graph__().values()
        assert isinstance(future, Future) and await future == 2
        assert await c.get({"x": (inc, 1), "y": (double, "x")}, "y") == 4


async def test_shutdown_closes_scheduler_workers_and_client():
    cluster = await LocalCluster(processes=False, asynchronous=True, n_workers=2,
                                 threads_per_worker=1)
    try:
        c = await Client(cluster, asynchronous=True, set_as_default=False)
        assert await c.submit(inc, 1) == 2
        await c.shutdown()
        assert c.status == "closed"
        assert cluster.status == "closed"
    finally:
        await cluster.close()
