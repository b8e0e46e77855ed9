"""The data futures stand for: scatter (and broadcast), gather, where data
lives (who_has, has_what), moving, replicating and rebalancing it, and when
it is let go (release, dropped futures, a second future or client on the
key, fire_and_forget), on the faces that have each call."""

import gc

import pytest

from trioflow import Client, Future, LocalCluster, fire_and_forget, wait
from _faces import Face
from _tasks import (
    add,
    append_line,
    double,
    identity,
    inc,
    loaded_modules,
    signal_and_wait,
    total,
    wait_for_path,
    write_marker,
)
from _util import (
    barrier,
    holders,
    key_is_held,
    scheduler_address,
    scheduler_task_count,
    two_workers,
    wait_forgotten,
    wait_until,
    worker_key_total,
)


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


# --- scatter -------------------------------------------------------------------------------


def test_scatter_gather_and_broadcast(face):
    async def scenario(c):
        scattered = await face(c.scatter([10, 20, 30]))
        assert all(isinstance(f, Future) for f in scattered)
        assert await face(c.gather(scattered)) == [10, 20, 30]
        assert await face.result(c.submit(total, scattered)) == 60

        by_name = await face(c.scatter({"x": 1, "y": 2}))
        assert await face(c.gather(by_name)) == {"x": 1, "y": 2}
        single = await face(c.scatter(b"payload", broadcast=True, hash=False))
        assert len((await face(c.who_has([single])))[single.key]) == 2
        assert await face.result(single) == b"payload"
    face.run(scenario)


def test_scatter_single_object_returns_future(face):
    async def scenario(c):
        future = await face(c.scatter(42))
        assert isinstance(future, Future)
        assert future.status == "finished"
        assert await face(future.result(timeout=10)) == 42
        assert await face(c.submit(inc, future).result(timeout=10)) == 43
    face.run(scenario)


def test_scatter_list_returns_list_of_futures(face):
    async def scenario(c):
        futures = await face(c.scatter([1, 2, 3]))
        assert isinstance(futures, list) and len(futures) == 3
        assert all(isinstance(f, Future) for f in futures)
        assert await face(c.gather(futures)) == [1, 2, 3]
        assert await face(c.submit(total, futures).result(timeout=10)) == 6
    face.run(scenario)


def test_scatter_dict_returns_dict_of_futures(face):
    async def scenario(c):
        futures = await face(c.scatter({"x": 1, "y": 2}))
        assert isinstance(futures, dict) and set(futures) == {"x", "y"}
        assert futures["x"].key == "x" and futures["y"].key == "y"
        assert await face(c.gather(futures)) == {"x": 1, "y": 2}
        assert await face(c.submit(add, futures["x"], futures["y"]).result(timeout=10)) == 3
    face.run(scenario)


def test_scatter_broadcast_places_data_on_every_worker(face):
    async def scenario(c):
        future = await face(c.scatter(123, broadcast=True))
        holders = set((await face(c.who_has([future])))[future.key])
        assert holders == set(await face(c.nthreads()))
    face.run(scenario)


def test_scatter_workers_places_data_on_that_worker(face):
    async def scenario(c):
        for worker in await face.two_workers(c):
            future = (await face(c.scatter([worker], workers=[worker], hash=False)))[0]
            assert list((await face(c.who_has([future])))[future.key]) == [worker]
    face.run(scenario)


def test_scatter_hash_controls_key_reuse(face):
    async def scenario(client):
        a = await face(client.scatter("payload"))
        b = await face(client.scatter("payload"))
        assert a.key == b.key
        c = await face(client.scatter("payload", hash=False))
        d = await face(client.scatter("payload", hash=False))
        assert len({a.key, c.key, d.key}) == 3
        assert await face(client.gather([a, c, d])) == ["payload"] * 3
    face.run(scenario)


def test_task_on_other_worker_reads_scattered_data(face):
    async def scenario(c):
        worker_a, worker_b = await face.two_workers(c)
        data = await face(c.scatter(b"x" * 10_000, workers=[worker_a], hash=False))
        result = c.submit(len, data, workers=[worker_b])
        assert await face(result.result(timeout=10)) == 10_000
    face.run(scenario)


@pytest.mark.timeout(120)
def test_processes_scatter_and_broadcast(proc_client):
    worker_a, worker_b = two_workers(proc_client)
    everywhere = proc_client.scatter({"k": 7}, broadcast=True)["k"]
    assert set(proc_client.who_has([everywhere])["k"]) == {worker_a, worker_b}
    pinned = proc_client.scatter([1, 2, 3], workers=[worker_a])
    assert all(list(proc_client.who_has([f])[f.key]) == [worker_a] for f in pinned)
    assert proc_client.submit(total, pinned, workers=[worker_b]).result(timeout=30) == 6
    assert proc_client.gather(pinned) == [1, 2, 3]
    assert proc_client.submit(add, everywhere, 1).result(timeout=30) == 8


# --- gather, and where data lives ----------------------------------------------------------


def test_gather_nested_containers(face):
    async def scenario(client):
        a, b, c = (client.submit(inc, i) for i in range(3))
        result = await face(client.gather([a, (b, c), {"x": a, "y": [b, 99]}]))
        assert result == [1, (2, 3), {"x": 1, "y": [2, 99]}]
        assert isinstance(result[1], tuple)
    face.run(scenario)


async def _a_result_on_the_first_worker(face, client):
    """(worker_a, worker_b, a finished future of ``inc(1)`` computed on worker_a)."""
    worker_a, worker_b = await face.two_workers(client)
    future = client.submit(inc, 1, workers=[worker_a])
    await face(future.result(timeout=10))
    return worker_a, worker_b, future


async def _results_on_the_first_worker(face, client, values):
    """(worker_a, worker_b, finished futures of ``inc`` over ``values``, all on worker_a)."""
    worker_a, worker_b = await face.two_workers(client)
    futures = client.map(inc, values, workers=[worker_a])
    await face(wait(futures, timeout=10))
    return worker_a, worker_b, futures


def test_who_has_and_has_what(face):
    async def scenario(c):
        worker_a, worker_b, future = await _a_result_on_the_first_worker(face, c)
        assert list((await face(c.who_has([future])))[future.key]) == [worker_a]
        assert list((await face(c.who_has()))[future.key]) == [worker_a]
        has_what = await face(c.has_what())
        assert set(has_what) == {worker_a, worker_b}
        assert future.key in has_what[worker_a]
        assert future.key not in has_what[worker_b]
    face.run(scenario)


def test_dependency_moves_between_workers(face):
    async def scenario(c):
        worker_a, worker_b = await face.two_workers(c)
        a = c.submit(inc, 1, workers=[worker_a])
        b = c.submit(inc, a, workers=[worker_b])
        assert await face(b.result(timeout=10)) == 3
        assert list((await face(c.who_has([b])))[b.key]) == [worker_b]
    face.run(scenario)


@pytest.mark.timeout(120)
def test_processes_dependency_moves_between_workers(proc_client):
    worker_a, worker_b = two_workers(proc_client)
    a = proc_client.submit(inc, 1, workers=[worker_a])
    b = proc_client.submit(inc, a, workers=[worker_b])
    assert b.result(timeout=30) == 3
    assert worker_a in proc_client.who_has([a])[a.key]
    assert list(proc_client.who_has([b])[b.key]) == [worker_b]


@pytest.mark.timeout(120)
def test_worker_processes_import_numpy_before_their_first_array_arrives(proc_client):
    # Without the warm import, the first array a fresh worker receives pays for
    # `import numpy` in the middle of the transfer.
    wait_until(
        lambda: all(
            mods == ["numpy"]
            for mods in proc_client.run(loaded_modules, ["numpy"]).values()
        ),
        timeout=30,
        message="numpy imported on every worker process",
    )


@pytest.mark.timeout(120)
def test_warm_imports_follow_the_environment(check_leaks, monkeypatch):
    monkeypatch.setenv("TRIOFLOW_WARM_IMPORTS", " colorsys , trioflow_no_such_module,")
    with Client(processes=True, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        client.wait_for_workers(1, timeout=30)
        # a module that is not installed is skipped; the others are imported
        wait_until(
            lambda: list(client.run(loaded_modules, ["colorsys"]).values()) == [["colorsys"]],
            timeout=30,
            message="colorsys imported on the worker",
        )
        (mods,) = client.run(loaded_modules, ["numpy", "trioflow_no_such_module"]).values()
        assert mods == []
        assert client.submit(inc, 1).result(timeout=30) == 2


# --- replicate and rebalance ---------------------------------------------------------------


def test_replicate_and_rebalance(face):
    async def scenario(c):
        worker_a, worker_b = sorted(await face(c.nthreads()))
        future = c.submit(inc, 1, workers=[worker_a])
        await face.result(future)
        await face(c.replicate([future], n=2))
        assert sorted((await face(c.who_has([future])))[future.key]) == [worker_a, worker_b]

        futures = c.map(inc, range(10, 20), workers=[worker_a])
        await face(wait(futures))
        await face(c.rebalance(futures))
        has_what = await face(c.has_what())
        assert has_what[worker_a] and has_what[worker_b]
    face.run(scenario)


def test_replicate_copies_data_to_n_workers_then_to_all(face):
    async def scenario(c):
        worker_a, worker_b, future = await _a_result_on_the_first_worker(face, c)
        assert (await face(c.who_has([future])))[future.key] == [worker_a]
        await face(c.replicate([future], n=1))
        assert (await face(c.who_has([future])))[future.key] == [worker_a]
        await face(c.replicate([future]))
        assert sorted((await face(c.who_has([future])))[future.key]) == [worker_a, worker_b]
        assert all(future.key in keys for keys in (await face(c.has_what())).values())
        assert await face(future.result(timeout=10)) == 2
    face.run(scenario)


def test_replicate_onto_chosen_workers(face):
    async def scenario(c):
        worker_a, worker_b, futures = await _results_on_the_first_worker(face, c, range(3))
        await face(c.replicate(futures, n=1, workers=[worker_b]))
        who_has = await face(c.who_has(futures))
        assert all(sorted(who_has[f.key]) == [worker_a, worker_b] for f in futures)
    face.run(scenario)


def test_rebalance_spreads_data_over_the_workers(face):
    async def scenario(c):
        worker_a, worker_b, futures = await _results_on_the_first_worker(face, c, range(10))
        assert len((await face(c.has_what()))[worker_b]) == 0
        await face(c.rebalance(futures))
        has_what = await face(c.has_what())
        assert len(has_what[worker_a]) > 0 and len(has_what[worker_b]) > 0
        assert await face(c.gather(futures)) == list(range(1, 11))
    face.run(scenario)


# --- release and forgetting ----------------------------------------------------------------


def test_release_and_dropping_futures_forget_keys(face):
    async def scenario(c):
        assert await face.task_count(c) == 0
        future = c.submit(inc, 1)
        copy = Future(future.key, c)
        await face.result(future)
        key = future.key
        future.release()
        await face.barrier(c)
        assert (await face(c.who_has([copy])))[key]
        del copy
        gc.collect()
        await face.until(lambda: face.forgotten(c, key), message="key forgotten")
        await face.until_equal(lambda: face.task_count(c), 0,
                               message="scheduler has no tasks")
    face.run(scenario)


def test_release_lets_the_scheduler_forget_the_key(inproc_client):
    assert scheduler_task_count(inproc_client) == 0
    future = inproc_client.submit(inc, 1)
    future.result(timeout=10)
    key = future.key
    assert inproc_client.who_has()[key]
    assert scheduler_task_count(inproc_client) == 1
    future.release()
    wait_forgotten(inproc_client, key)
    wait_until(lambda: scheduler_task_count(inproc_client) == 0, message="no tasks left")


def test_key_is_forgotten_only_when_its_last_future_is_gone(inproc_client):
    first = inproc_client.submit(inc, 41)
    second = inproc_client.submit(inc, 41)
    third = Future(first.key, inproc_client)
    assert first.key == second.key == third.key
    assert third.result(timeout=10) == 42
    key = first.key
    del first, second
    gc.collect()
    barrier(inproc_client)
    assert inproc_client.who_has([third])[key]
    assert any(key in keys for keys in inproc_client.has_what().values())
    assert scheduler_task_count(inproc_client) == 1
    del third
    gc.collect()
    wait_forgotten(inproc_client, key)
    wait_until(lambda: scheduler_task_count(inproc_client) == 0, message="no tasks left")


def test_dropping_every_future_of_a_graph_forgets_all_of_it(inproc_client):
    first = inproc_client.submit(inc, 1)
    second = inproc_client.submit(double, first)
    third = inproc_client.submit(add, first, second)
    assert third.result(timeout=10) == 6
    del first, second, third
    gc.collect()
    wait_until(lambda: scheduler_task_count(inproc_client) == 0, message="graph forgotten")
    assert inproc_client.who_has() == {}
    assert all(not keys for keys in inproc_client.has_what().values())


def test_deleted_future_releases_worker_memory(inproc_client):
    future = inproc_client.submit(inc, 1)
    future.result(timeout=10)
    key = future.key
    assert holders(inproc_client, key)
    assert worker_key_total(inproc_client) == 1
    del future
    gc.collect()
    wait_forgotten(inproc_client, key)
    wait_until(lambda: worker_key_total(inproc_client) == 0, message="worker data empty")


def test_release_frees_worker_memory(inproc_client):
    future = inproc_client.submit(inc, 1)
    future.result(timeout=10)
    key = future.key
    future.release()
    wait_forgotten(inproc_client, key)
    wait_until(lambda: worker_key_total(inproc_client) == 0, message="worker data empty")


def test_deleted_scattered_future_releases_worker_memory(inproc_client):
    future = inproc_client.scatter(b"payload", broadcast=True, hash=False)
    key = future.key
    assert len(holders(inproc_client, key)) == 2
    del future
    gc.collect()
    wait_forgotten(inproc_client, key)
    wait_until(lambda: worker_key_total(inproc_client) == 0, message="worker data empty")


def test_second_future_for_same_key_keeps_data(inproc_client):
    a = inproc_client.submit(inc, 1)
    b = inproc_client.submit(inc, 1)
    assert a.key == b.key
    a.result(timeout=10)
    key = a.key
    del a
    gc.collect()
    barrier(inproc_client)
    assert holders(inproc_client, key)
    assert key in inproc_client.who_has()
    assert b.result(timeout=10) == 2
    del b
    gc.collect()
    wait_forgotten(inproc_client, key)


def test_second_client_keeps_shared_pure_key(inproc_client):
    with Client(scheduler_address(inproc_client)) as other:
        mine = inproc_client.submit(inc, 5)
        theirs = other.submit(inc, 5)
        assert mine.key == theirs.key
        assert mine.result(timeout=10) == 6
        key = mine.key
        del mine
        gc.collect()
        barrier(inproc_client)
        assert holders(inproc_client, key)
        assert theirs.result(timeout=10) == 6
        del theirs
        gc.collect()
        wait_forgotten(inproc_client, key)


def test_intermediate_result_released_after_dependent_finishes(inproc_client):
    first = inproc_client.submit(inc, 1)
    second = inproc_client.submit(inc, first)
    first_key = first.key
    del first
    gc.collect()
    assert second.result(timeout=10) == 3
    # The scheduler may remember the released key as lineage for `second`,
    # but no worker may keep its data.
    wait_until(lambda: not key_is_held(inproc_client, first_key), message="intermediate freed")
    held = {key for key, workers in inproc_client.who_has().items() if workers}
    assert held == {second.key}
    wait_until(lambda: worker_key_total(inproc_client) == 1, message="one key in memory")


def _single_thread_client():
    return Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None)


def test_future_dropped_right_after_submit_does_not_stall_worker():
    with _single_thread_client() as client:
        client.submit(inc, 1)  # released at once: while queued, or while executing
        assert client.submit(inc, 2).result(timeout=10) == 3
        assert client.gather(client.map(inc, range(5))) == [1, 2, 3, 4, 5]
        wait_until(lambda: worker_key_total(client) == 0, message="worker data empty")


def test_release_while_executing_frees_the_thread(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    with _single_thread_client() as client:
        try:
            running = client.submit(signal_and_wait, str(started), str(release))
            wait_until(started.exists, message="task started")
            key = running.key
            running.release()
        finally:
            release.touch()
        assert client.submit(inc, 2).result(timeout=10) == 3
        wait_forgotten(client, key)
        wait_until(lambda: worker_key_total(client) == 0, message="worker data empty")


@pytest.mark.timeout(120)
def test_processes_released_keys_leave_worker_memory(proc_client):
    futures = proc_client.map(inc, range(10))
    assert proc_client.gather(futures) == list(range(1, 11))
    scattered = proc_client.scatter(b"x" * 1000, broadcast=True)
    keys = [f.key for f in futures] + [scattered.key]
    assert worker_key_total(proc_client) >= 11
    keep = futures[0]
    del futures, scattered
    gc.collect()
    for key in keys[1:]:
        wait_forgotten(proc_client, key, timeout=20)
    wait_until(lambda: worker_key_total(proc_client) == 1, timeout=20, message="one key left")
    assert keep.result(timeout=30) == 1


# --- fire_and_forget -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_fire_and_forget_survives_the_async_client(tmp_path, anyio_backend):
    face = Face(anyio_backend)
    release, marker = tmp_path / "release", tmp_path / "marker"
    async with LocalCluster(processes=False, asynchronous=True, n_workers=2,
                            threads_per_worker=2) as cluster:
        try:
            async with Client(cluster, asynchronous=True, set_as_default=False) as c:
                dependency = c.submit(wait_for_path, str(release))
                fire_and_forget(c.submit(write_marker, str(marker), dependency))
                del dependency
                gc.collect()
                await face.barrier(c)
            assert not marker.exists()
        finally:
            release.touch()
        await face.until(marker.exists, message="fire-and-forget marker written")
        async with Client(cluster, asynchronous=True, set_as_default=False) as observer:
            await face.until_equal(lambda: face.task_count(observer), 0,
                                   message="tasks forgotten")


def test_fire_and_forget_runs_after_the_future_and_the_client_are_gone(tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"
    with LocalCluster(processes=False, n_workers=2, threads_per_worker=2) as cluster:
        try:
            with Client(cluster, set_as_default=False) as client:
                dependency = client.submit(wait_for_path, str(release))
                task = client.submit(write_marker, str(marker), dependency)
                fire_and_forget(task)
                del dependency, task
                gc.collect()
                barrier(client)
            assert not marker.exists()
        finally:
            release.touch()
        wait_until(marker.exists, message="fire-and-forget task wrote its marker")
        with Client(cluster, set_as_default=False) as observer:
            # the result was not kept: nobody holds a future for it
            wait_until(lambda: scheduler_task_count(observer) == 0, message="tasks forgotten")


def test_dropped_future_without_fire_and_forget_does_not_run(inproc_client, tmp_path):
    release, marker = tmp_path / "release", tmp_path / "marker"
    try:
        dependency = inproc_client.submit(wait_for_path, str(release))
        inproc_client.submit(write_marker, str(marker), dependency)  # dropped at once
    finally:
        release.touch()
    assert dependency.result(timeout=10) is True
    assert inproc_client.submit(identity, dependency).result(timeout=10) is True
    barrier(inproc_client)
    assert not marker.exists()


def test_fire_and_forget_accepts_collections(inproc_client, tmp_path):
    out = tmp_path / "out"
    futures = {"one": inproc_client.submit(append_line, str(out), "one"),
               "more": [inproc_client.submit(append_line, str(out), w) for w in ("two", "three")]}
    fire_and_forget(futures)
    del futures
    gc.collect()
    wait_until(lambda: out.exists() and len(out.read_text().split()) == 3,
               message="three lines written")
    assert sorted(out.read_text().split()) == ["one", "three", "two"]
