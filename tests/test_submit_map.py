"""Submitting tasks: submit and map with their keywords (keys, purity,
placement, priority, resources), futures as arguments, Future's status and
repr, get on a raw graph, the concurrent.futures executor, and the same
calls on every face (blocking, trio, asyncio)."""

import concurrent.futures
import io
import os
import pathlib

import pytest

import trioflow
from trioflow import Client, Future, as_completed, fire_and_forget, wait
from _tasks import (
    add,
    append_line,
    divide,
    double,
    getpid,
    inc,
    signal_and_wait,
    total,
    total_values,
    wait_for_path,
)
from _util import two_workers, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


# --- every face ----------------------------------------------------------------------------


def test_submit_and_await_futures(face):
    async def scenario(c):
        assert bool(c.asynchronous) is not face.blocking
        assert await face.result(c.submit(inc, 1)) == 2
        future = c.submit(add, 1, y=10)
        assert await face.result(future) == 11
        assert await face(future.result()) == 11
        assert await face(future.result(timeout=10)) == 11
        assert future.done() and future.status == "finished"
        chained = c.submit(inc, c.submit(double, future))
        assert await face.result(chained) == 23
    face.run(scenario)


def test_map_and_gather(face):
    async def scenario(c):
        futures = c.map(inc, range(5))
        assert await face(c.gather(futures)) == [1, 2, 3, 4, 5]
        assert await face(c.gather({"a": futures[0], "b": [futures[1], 7]})) == {
            "a": 1, "b": [2, 7]}
        assert await face(c.gather(futures[2])) == 3
    face.run(scenario)


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


# --- submit --------------------------------------------------------------------------------


def test_submit_passes_args_and_kwargs(face):
    async def scenario(c):
        assert await face(c.submit(add, 1, y=2).result(timeout=10)) == 3
        assert await face(c.submit(add, x=5, y=6).result(timeout=10)) == 11
    face.run(scenario)


def test_submit_key_names_the_future(face):
    async def scenario(c):
        future = c.submit(inc, 1, key="my-key")
        assert future.key == "my-key"
        assert await face(future.result(timeout=10)) == 2
        assert "my-key" in await face(c.who_has())
    face.run(scenario)


def test_pure_submit_reuses_key(face):
    async def scenario(c):
        a = c.submit(inc, 1)
        b = c.submit(inc, 1, pure=True)
        assert a.key == b.key
        assert a.key.startswith("inc-")
        assert c.submit(inc, 2).key != a.key
        assert await face(a.result(timeout=10)) == await face(b.result(timeout=10)) == 2
    face.run(scenario)


def test_impure_submit_gets_fresh_keys(face):
    async def scenario(c):
        a = c.submit(inc, 1, pure=False)
        b = c.submit(inc, 1, pure=False)
        assert a.key != b.key
        assert await face(a.result(timeout=10)) == await face(b.result(timeout=10)) == 2
    face.run(scenario)


def test_submit_workers_places_task_on_that_worker(face):
    async def scenario(c):
        workers = sorted(await face(c.nthreads()))
        assert len(workers) == 2, workers
        for worker in workers:
            future = c.submit(inc, 10, workers=[worker], pure=False)
            assert await face(future.result(timeout=10)) == 11
            assert list((await face(c.who_has([future])))[future.key]) == [worker]
    face.run(scenario)


def test_allow_other_workers_runs_when_requested_worker_missing(face):
    async def scenario(c):
        future = c.submit(
            inc, 1, workers=["no-such-worker"], allow_other_workers=True
        )
        assert await face(future.result(timeout=10)) == 2
    face.run(scenario)


def test_restricted_task_waits_for_missing_worker(face):
    async def scenario(c):
        future = c.submit(inc, 1, workers=["no-such-worker"])
        with pytest.raises(TimeoutError):
            await face(future.result(timeout=0.5))
        assert future.status == "pending"
        await face(future.cancel())
    face.run(scenario)


def test_priority_runs_higher_priority_first(tmp_path):
    started, release, log = tmp_path / "started", tmp_path / "release", tmp_path / "log"
    with Client(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as client:
        client.wait_for_workers(2, timeout=10)
        busy, spare = two_workers(client)
        try:
            blocker = client.submit(
                signal_and_wait, str(started), str(release), workers=[busy], pure=False
            )
            wait_until(started.exists, message="blocker started")
            low = client.submit(append_line, str(log), "low", workers=[busy], priority=-10)
            high = client.submit(append_line, str(log), "high", workers=[busy], priority=10)
            # Released by a task submitted after low/high on the same client, so
            # the scheduler has both before the busy worker frees its thread.
            opener = client.submit(pathlib.Path.touch, release, workers=[spare])
            client.gather([blocker, low, high, opener], errors="raise")
        finally:
            release.touch()
        assert log.read_text().split() == ["high", "low"]


def test_resources_restrict_placement():
    with Client(
        processes=False,
        n_workers=1,
        threads_per_worker=1,
        resources={"GPU": 1},
        dashboard_address=None,
    ) as client:
        assert client.submit(inc, 1, resources={"GPU": 1}).result(timeout=10) == 2
        unplaceable = client.submit(inc, 2, resources={"TPU": 1})
        with pytest.raises(TimeoutError):
            unplaceable.result(timeout=0.5)
        unplaceable.cancel()


def test_fifo_timeout_is_accepted(face):
    async def scenario(c):
        assert await face(c.submit(inc, 1, fifo_timeout="100ms").result(timeout=10)) == 2
        futures = c.map(inc, [1, 2], fifo_timeout=0.1)
        assert await face(c.gather(futures)) == [2, 3]
    face.run(scenario)


# --- map -----------------------------------------------------------------------------------


def test_map_over_several_iterables(face):
    async def scenario(c):
        futures = c.map(add, [1, 2, 3], [10, 20, 30])
        assert await face(c.gather(futures)) == [11, 22, 33]
    face.run(scenario)


def test_map_key_prefix_string(face):
    async def scenario(c):
        futures = c.map(inc, range(3), key="batch")
        assert all(f.key.startswith("batch-") for f in futures)
        assert len({f.key for f in futures}) == 3
        assert await face(c.gather(futures)) == [1, 2, 3]
    face.run(scenario)


def test_map_key_list(face):
    async def scenario(c):
        futures = c.map(inc, range(3), key=["k0", "k1", "k2"])
        assert [f.key for f in futures] == ["k0", "k1", "k2"]
        assert await face(c.gather(futures)) == [1, 2, 3]
    face.run(scenario)


def test_map_pure_false_gives_fresh_keys(face):
    async def scenario(c):
        first = c.map(inc, range(3), pure=False)
        second = c.map(inc, range(3), pure=False)
        assert not {f.key for f in first} & {f.key for f in second}
        pure_first = c.map(inc, range(3))
        pure_second = c.map(inc, range(3))
        assert [f.key for f in pure_first] == [f.key for f in pure_second]
        assert await face(c.gather(first)) == await face(c.gather(second)) == [1, 2, 3]
    face.run(scenario)


def test_map_batch_size(face):
    async def scenario(c):
        futures = c.map(inc, range(7), batch_size=2)
        assert await face(c.gather(futures)) == list(range(1, 8))
    face.run(scenario)


# --- futures, graphs and the executor ------------------------------------------------------


def test_futures_as_arguments_nested_in_list_and_dict(face):
    async def scenario(c):
        a = c.submit(inc, 1)
        b = c.submit(inc, 2)
        assert await face(c.submit(add, a, b).result(timeout=10)) == 5
        assert await face(c.submit(add, a, y=b).result(timeout=10)) == 5
        assert await face(c.submit(total, [a, b, 10]).result(timeout=10)) == 15
        assert await face(c.submit(total_values, {"p": a, "q": b}).result(timeout=10)) == 5
    face.run(scenario)


def test_future_status_while_pending_and_finished(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            future = c.submit(wait_for_path, str(release))
            assert isinstance(future.key, str) and future.key
            assert future.status == "pending"
            assert not future.done()
            assert not future.cancelled()
        finally:
            release.touch()
        assert await face(future.result(timeout=10)) is True
        assert future.status == "finished"
        assert future.done()
        assert not future.cancelled()
    face.run(scenario)


def test_future_repr_shows_status_and_result_type(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        try:
            future = c.submit(wait_for_path, str(release))
            text = repr(future)
            assert "pending" in text and future.key in text
        finally:
            release.touch()
        await face(future.result(timeout=10))
        text = repr(future)
        assert "finished" in text and "bool" in text and future.key in text
        number = c.submit(inc, 1)
        await face(number.result(timeout=10))
        assert "int" in repr(number)
    face.run(scenario)


def test_client_get_runs_task_graph(face):
    async def scenario(c):
        graph = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
        assert await face(c.get(graph, "z")) == 3
        assert list(await face(c.get(graph, ["y", "z"]))) == [2, 3]
    face.run(scenario)


def test_get_executor_is_a_concurrent_futures_executor(inproc_client):
    executor = inproc_client.get_executor()
    assert isinstance(executor, concurrent.futures.Executor)
    future = executor.submit(add, 1, y=2)
    assert isinstance(future, concurrent.futures.Future)
    assert future.result(timeout=10) == 3
    assert list(executor.map(inc, range(5), timeout=10)) == [1, 2, 3, 4, 5]
    failing = executor.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError):
        failing.result(timeout=10)
    done, _ = concurrent.futures.wait([executor.submit(inc, i) for i in range(3)], timeout=10)
    assert sorted(f.result() for f in done) == [1, 2, 3]
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        executor.submit(inc, 1)


def test_get_executor_passes_submit_keywords(inproc_client):
    worker_a, _ = two_workers(inproc_client)
    from trioflow import get_worker

    def where():
        return get_worker().address

    with inproc_client.get_executor(workers=[worker_a]) as executor:
        assert {f.result(timeout=10) for f in [executor.submit(where) for _ in range(4)]} == {
            worker_a}


@pytest.mark.timeout(120)
def test_processes_workers_compute_in_their_own_processes(proc_client):
    nthreads = proc_client.nthreads()
    assert sorted(nthreads.values()) == [1, 1]
    pids = proc_client.run(os.getpid)
    assert set(pids) == set(nthreads)
    assert len(set(pids.values())) == 2 and os.getpid() not in pids.values()

    assert proc_client.submit(add, 1, y=2).result(timeout=30) == 3
    assert proc_client.submit(inc, 1).key == proc_client.submit(inc, 1).key
    futures = proc_client.map(add, range(10), range(10))
    assert proc_client.gather(futures) == [2 * i for i in range(10)]
    a, b = futures[:2]
    assert proc_client.gather({"a": a, "pair": (a, b)}) == {"a": 0, "pair": (0, 2)}
    assert proc_client.submit(total, [a, b]).result(timeout=30) == 2
    graph = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
    assert proc_client.get(graph, "z") == 3
    for worker in proc_client.scheduler_info()["workers"].values():
        assert worker["nthreads"] == 1 and "memory_limit" in worker and "name" in worker


# --- every documented keyword is accepted --------------------------------------------------


def test_every_documented_keyword_is_accepted(inproc_client, tmp_path):
    c = inproc_client
    worker_a, worker_b = two_workers(c)

    future = c.submit(inc, 1, key="inc-keywords", workers=[worker_a], resources=None,
                      retries=1, priority=1, fifo_timeout="100 ms", allow_other_workers=True,
                      actor=False, actors=False, pure=True)
    futures = c.map(inc, [1, 2], key="map-keywords", workers=[worker_a, worker_b],
                    retries=1, resources=None, priority=0, allow_other_workers=False,
                    fifo_timeout="100 ms", actor=False, actors=False, pure=False, batch_size=1)
    assert c.gather(futures, errors="raise", direct=None, asynchronous=None) == [2, 3]
    assert future.result(timeout=10) == 2

    scattered = c.scatter([10, 20], workers=[worker_b], broadcast=False, direct=None,
                          hash=False, timeout=10, asynchronous=None)
    assert c.gather(scattered) == [10, 20]

    assert c.get({"x": (inc, 1)}, "x", workers=None, allow_other_workers=None, resources=None,
                 sync=True, asynchronous=None, direct=None, retries=None, priority=0,
                 fifo_timeout="60s", actors=None) == 2

    import dask

    delayed = dask.delayed(inc)(5)
    computed = c.compute(delayed, sync=False, optimize_graph=True, workers=None,
                         allow_other_workers=False, resources=None, retries=0, priority=0,
                         fifo_timeout="60s", actors=None, traverse=True)
    assert computed.result(timeout=10) == 6
    persisted = c.persist(delayed, optimize_graph=True, workers=None,
                          allow_other_workers=None, resources=None, retries=None,
                          priority=0, fifo_timeout="60s", actors=None)
    assert persisted.compute() == 6

    assert set(c.who_has(futures=[future])) == {future.key}
    assert set(c.has_what(workers=[worker_a])) == {worker_a}
    assert c.nthreads(workers=[worker_a]) == {worker_a: 2}
    assert c.ncores(workers=[worker_b]) == {worker_b: 2}
    assert set(c.scheduler_info()["workers"]) == {worker_a, worker_b}
    assert c.run(getpid, workers=[worker_a], wait=True, nanny=False) == {worker_a: os.getpid()}
    assert c.run_on_scheduler(add, 1, 2) == 3
    c.wait_for_workers(n_workers=2, timeout=10)

    c.replicate(futures=[future], n=2, workers=[worker_a, worker_b], branching_factor=2)
    c.rebalance(futures=futures, workers=[worker_a, worker_b])

    with c.get_executor(workers=[worker_a], retries=1) as executor:
        assert executor.submit(inc, 1).result(timeout=10) == 2

    failing = c.submit(divide, 1, 0)
    failing.exception(timeout=10)
    c.retry(futures=[failing], asynchronous=None)
    failing.retry()
    assert isinstance(failing.exception(timeout=10), ZeroDivisionError)
    assert failing.traceback(timeout=10) is not None
    c.cancel(futures=[failing], asynchronous=None, force=False)
    c.submit(inc, 100).cancel(force=True)

    same = Future(future.key, client=c, inform=True, state=None)
    assert same.result(timeout=10) == 2
    assert Future(future.key, c, False).result(timeout=10) == 2
    same.add_done_callback(fn=lambda f: None)

    assert wait(fs=futures, timeout=10, return_when="ALL_COMPLETED")[1] == set()
    seq = as_completed(futures=futures, loop=None, with_results=True, raise_errors=True)
    assert sorted(value for _, value in seq) == [2, 3]
    fire_and_forget(obj=c.submit(inc, 7))
    trioflow.progress(futures, notebook=False, multi=True, complete=True, group_by="prefix",
                      interval="50ms", file=io.StringIO())
    assert c.dashboard_link is None
