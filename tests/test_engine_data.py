"""Scatter, gather, and how long data lives on workers."""

import gc

import pytest

from trioflow import Client, Future
from _tasks import add, inc, loaded_modules, signal_and_wait, total
from _util import (
    barrier,
    key_is_forgotten,
    key_is_held,
    scheduler_address,
    wait_until,
    worker_key_total,
)


def _two_workers(client):
    workers = sorted(client.nthreads())
    assert len(workers) == 2, workers
    return workers


def _holders(client, key):
    return {address for address, keys in client.has_what().items() if key in keys}


def _wait_forgotten(client, key, timeout=10):
    wait_until(lambda: key_is_forgotten(client, key), timeout, message=f"{key} forgotten")


# --- scatter ----------------------------------------------------------------------


def test_scatter_single_object_returns_future(inproc_client):
    future = inproc_client.scatter(42)
    assert isinstance(future, Future)
    assert future.status == "finished"
    assert future.result(timeout=10) == 42
    assert inproc_client.submit(inc, future).result(timeout=10) == 43


def test_scatter_list_returns_list_of_futures(inproc_client):
    futures = inproc_client.scatter([1, 2, 3])
    assert isinstance(futures, list) and len(futures) == 3
    assert all(isinstance(f, Future) for f in futures)
    assert inproc_client.gather(futures) == [1, 2, 3]
    assert inproc_client.submit(total, futures).result(timeout=10) == 6


def test_scatter_dict_returns_dict_of_futures(inproc_client):
    futures = inproc_client.scatter({"x": 1, "y": 2})
    assert isinstance(futures, dict) and set(futures) == {"x", "y"}
    assert futures["x"].key == "x" and futures["y"].key == "y"
    assert inproc_client.gather(futures) == {"x": 1, "y": 2}
    assert inproc_client.submit(add, futures["x"], futures["y"]).result(timeout=10) == 3


def test_scatter_broadcast_places_data_on_every_worker(inproc_client):
    future = inproc_client.scatter(123, broadcast=True)
    holders = set(inproc_client.who_has([future])[future.key])
    assert holders == set(inproc_client.nthreads())


def test_scatter_workers_places_data_on_that_worker(inproc_client):
    for worker in _two_workers(inproc_client):
        future = inproc_client.scatter([worker], workers=[worker], hash=False)[0]
        assert list(inproc_client.who_has([future])[future.key]) == [worker]


def test_scatter_hash_controls_key_reuse(inproc_client):
    a = inproc_client.scatter("payload")
    b = inproc_client.scatter("payload")
    assert a.key == b.key
    c = inproc_client.scatter("payload", hash=False)
    d = inproc_client.scatter("payload", hash=False)
    assert len({a.key, c.key, d.key}) == 3
    assert inproc_client.gather([a, c, d]) == ["payload"] * 3


def test_task_on_other_worker_reads_scattered_data(inproc_client):
    worker_a, worker_b = _two_workers(inproc_client)
    data = inproc_client.scatter(b"x" * 10_000, workers=[worker_a], hash=False)
    result = inproc_client.submit(len, data, workers=[worker_b])
    assert result.result(timeout=10) == 10_000


# --- lifetime -----------------------------------------------------------------------


def test_deleted_future_releases_worker_memory(inproc_client):
    future = inproc_client.submit(inc, 1)
    future.result(timeout=10)
    key = future.key
    assert _holders(inproc_client, key)
    assert worker_key_total(inproc_client) == 1
    del future
    gc.collect()
    _wait_forgotten(inproc_client, key)
    wait_until(lambda: worker_key_total(inproc_client) == 0, message="worker data empty")


def test_release_frees_worker_memory(inproc_client):
    future = inproc_client.submit(inc, 1)
    future.result(timeout=10)
    key = future.key
    future.release()
    _wait_forgotten(inproc_client, key)
    wait_until(lambda: worker_key_total(inproc_client) == 0, message="worker data empty")


def test_deleted_scattered_future_releases_worker_memory(inproc_client):
    future = inproc_client.scatter(b"payload", broadcast=True, hash=False)
    key = future.key
    assert len(_holders(inproc_client, key)) == 2
    del future
    gc.collect()
    _wait_forgotten(inproc_client, key)
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
    assert _holders(inproc_client, key)
    assert key in inproc_client.who_has()
    assert b.result(timeout=10) == 2
    del b
    gc.collect()
    _wait_forgotten(inproc_client, key)


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
        assert _holders(inproc_client, key)
        assert theirs.result(timeout=10) == 6
        del theirs
        gc.collect()
        _wait_forgotten(inproc_client, key)


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
        _wait_forgotten(client, key)
        wait_until(lambda: worker_key_total(client) == 0, message="worker data empty")


# --- processes=True -----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_processes_scatter_and_broadcast(proc_client):
    worker_a, worker_b = _two_workers(proc_client)
    everywhere = proc_client.scatter({"k": 7}, broadcast=True)["k"]
    assert set(proc_client.who_has([everywhere])["k"]) == {worker_a, worker_b}
    pinned = proc_client.scatter([1, 2, 3], workers=[worker_a])
    assert all(list(proc_client.who_has([f])[f.key]) == [worker_a] for f in pinned)
    assert proc_client.submit(total, pinned, workers=[worker_b]).result(timeout=30) == 6
    assert proc_client.gather(pinned) == [1, 2, 3]
    assert proc_client.submit(add, everywhere, 1).result(timeout=30) == 8


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
        _wait_forgotten(proc_client, key, timeout=20)
    wait_until(lambda: worker_key_total(proc_client) == 1, timeout=20, message="one key left")
    assert keep.result(timeout=30) == 1


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
