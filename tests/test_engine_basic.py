"""Clients, clusters and the futures API: submit, map, gather, Future, get, wait, info."""

import os
import pathlib
import socket

import pytest

import trioflow
from trioflow import Client, LocalCluster
from _tasks import (
    add,
    append_line,
    flaky_inc,
    inc,
    signal_and_wait,
    total,
    total_values,
    wait_for_path,
)
from _util import scheduler_address, wait_until


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_workers(client):
    workers = sorted(client.nthreads())
    assert len(workers) == 2, workers
    return workers


# --- constructors and shutdown -------------------------------------------------


def test_client_processes_false_starts_threaded_workers(inproc_client):
    assert sorted(inproc_client.nthreads().values()) == [2, 2]
    assert inproc_client.submit(inc, 1).result(timeout=10) == 2


def test_client_accepts_dask_keyword_arguments():
    with Client(
        processes=False,
        n_workers=1,
        threads_per_worker=1,
        memory_limit="1GiB",
        dashboard_address=None,
        scheduler_port=0,
        asynchronous=False,
        name="keyword-test",
        timeout=30,
        set_as_default=True,
    ) as client:
        client.wait_for_workers(1, timeout=10)
        assert client.submit(inc, 1).result(timeout=10) == 2
        (info,) = client.scheduler_info()["workers"].values()
        assert info["nthreads"] == 1
        assert info["memory_limit"] == 2**30
        assert trioflow.get_client() is client


def test_client_with_set_as_default_false_works():
    with Client(
        processes=False,
        n_workers=1,
        threads_per_worker=1,
        dashboard_address=None,
        set_as_default=False,
    ) as client:
        assert client.submit(inc, 41).result(timeout=10) == 42


def test_local_cluster_passed_to_client():
    with LocalCluster(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=10)
            assert sorted(client.nthreads().values()) == [1, 1]
            assert client.submit(add, 1, 2).result(timeout=10) == 3
        # A second client connects to the same in-process cluster by address.
        with Client(cluster.scheduler_address) as other:
            assert other.submit(inc, 1).result(timeout=10) == 2
            assert len(other.nthreads()) == 2


def test_client_close_leaves_nothing_behind():
    client = Client(processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None)
    try:
        assert client.map(inc, range(10)) and client.submit(inc, 1).result(timeout=10) == 2
    finally:
        client.close()
    assert client.status == "closed"
    # The autouse leak check verifies no thread, process or socket remains.


def test_context_manager_client_leaves_nothing_behind():
    with Client(processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None) as c:
        assert c.gather(c.map(inc, range(20))) == list(range(1, 21))


# --- submit ---------------------------------------------------------------------


def test_submit_passes_args_and_kwargs(inproc_client):
    assert inproc_client.submit(add, 1, y=2).result(timeout=10) == 3
    assert inproc_client.submit(add, x=5, y=6).result(timeout=10) == 11


def test_submit_key_names_the_future(inproc_client):
    future = inproc_client.submit(inc, 1, key="my-key")
    assert future.key == "my-key"
    assert future.result(timeout=10) == 2
    assert "my-key" in inproc_client.who_has()


def test_pure_submit_reuses_key(inproc_client):
    a = inproc_client.submit(inc, 1)
    b = inproc_client.submit(inc, 1, pure=True)
    assert a.key == b.key
    assert a.key.startswith("inc-")
    assert inproc_client.submit(inc, 2).key != a.key
    assert a.result(timeout=10) == b.result(timeout=10) == 2


def test_impure_submit_gets_fresh_keys(inproc_client):
    a = inproc_client.submit(inc, 1, pure=False)
    b = inproc_client.submit(inc, 1, pure=False)
    assert a.key != b.key
    assert a.result(timeout=10) == b.result(timeout=10) == 2


def test_submit_workers_places_task_on_that_worker(inproc_client):
    for worker in _two_workers(inproc_client):
        future = inproc_client.submit(inc, 10, workers=[worker], pure=False)
        assert future.result(timeout=10) == 11
        assert list(inproc_client.who_has([future])[future.key]) == [worker]


def test_allow_other_workers_runs_when_requested_worker_missing(inproc_client):
    future = inproc_client.submit(
        inc, 1, workers=["no-such-worker"], allow_other_workers=True
    )
    assert future.result(timeout=10) == 2


def test_restricted_task_waits_for_missing_worker(inproc_client):
    future = inproc_client.submit(inc, 1, workers=["no-such-worker"])
    with pytest.raises(TimeoutError):
        future.result(timeout=0.5)
    assert future.status == "pending"
    future.cancel()


def test_retries_rerun_failed_task(inproc_client, tmp_path):
    counter = tmp_path / "attempts"
    future = inproc_client.submit(flaky_inc, str(counter), 2, 10, retries=2)
    assert future.result(timeout=10) == 11
    assert counter.read_text() == "3"


def test_retries_exhausted_raises_last_error(inproc_client, tmp_path):
    counter = tmp_path / "attempts"
    future = inproc_client.submit(flaky_inc, str(counter), 2, 10, retries=1)
    with pytest.raises(RuntimeError, match="attempt 2"):
        future.result(timeout=10)
    assert counter.read_text() == "2"


def test_priority_runs_higher_priority_first(tmp_path):
    started, release, log = tmp_path / "started", tmp_path / "release", tmp_path / "log"
    with Client(
        processes=False, n_workers=2, threads_per_worker=1, dashboard_address=None
    ) as client:
        client.wait_for_workers(2, timeout=10)
        busy, spare = _two_workers(client)
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


def test_fifo_timeout_is_accepted(inproc_client):
    assert inproc_client.submit(inc, 1, fifo_timeout="100ms").result(timeout=10) == 2
    futures = inproc_client.map(inc, [1, 2], fifo_timeout=0.1)
    assert inproc_client.gather(futures) == [2, 3]


# --- map ------------------------------------------------------------------------


def test_map_over_several_iterables(inproc_client):
    futures = inproc_client.map(add, [1, 2, 3], [10, 20, 30])
    assert inproc_client.gather(futures) == [11, 22, 33]


def test_map_key_prefix_string(inproc_client):
    futures = inproc_client.map(inc, range(3), key="batch")
    assert all(f.key.startswith("batch-") for f in futures)
    assert len({f.key for f in futures}) == 3
    assert inproc_client.gather(futures) == [1, 2, 3]


def test_map_key_list(inproc_client):
    futures = inproc_client.map(inc, range(3), key=["k0", "k1", "k2"])
    assert [f.key for f in futures] == ["k0", "k1", "k2"]
    assert inproc_client.gather(futures) == [1, 2, 3]


def test_map_pure_false_gives_fresh_keys(inproc_client):
    first = inproc_client.map(inc, range(3), pure=False)
    second = inproc_client.map(inc, range(3), pure=False)
    assert not {f.key for f in first} & {f.key for f in second}
    pure_first = inproc_client.map(inc, range(3))
    pure_second = inproc_client.map(inc, range(3))
    assert [f.key for f in pure_first] == [f.key for f in pure_second]
    assert inproc_client.gather(first) == inproc_client.gather(second) == [1, 2, 3]


def test_map_batch_size(inproc_client):
    futures = inproc_client.map(inc, range(7), batch_size=2)
    assert inproc_client.gather(futures) == list(range(1, 8))


# --- gather and futures as arguments --------------------------------------------


def test_gather_nested_containers(inproc_client):
    a, b, c = (inproc_client.submit(inc, i) for i in range(3))
    result = inproc_client.gather([a, (b, c), {"x": a, "y": [b, 99]}])
    assert result == [1, (2, 3), {"x": 1, "y": [2, 99]}]
    assert isinstance(result[1], tuple)


def test_gather_errors_skip_drops_failed(inproc_client):
    good = inproc_client.submit(inc, 1)
    bad = inproc_client.submit(inc, "not a number")
    assert inproc_client.gather([good, bad], errors="skip") == [2]
    with pytest.raises(TypeError):
        inproc_client.gather([good, bad])


def test_futures_as_arguments_nested_in_list_and_dict(inproc_client):
    a = inproc_client.submit(inc, 1)
    b = inproc_client.submit(inc, 2)
    assert inproc_client.submit(add, a, b).result(timeout=10) == 5
    assert inproc_client.submit(add, a, y=b).result(timeout=10) == 5
    assert inproc_client.submit(total, [a, b, 10]).result(timeout=10) == 15
    assert inproc_client.submit(total_values, {"p": a, "q": b}).result(timeout=10) == 5


def test_dependency_moves_between_workers(inproc_client):
    worker_a, worker_b = _two_workers(inproc_client)
    a = inproc_client.submit(inc, 1, workers=[worker_a])
    b = inproc_client.submit(inc, a, workers=[worker_b])
    assert b.result(timeout=10) == 3
    assert list(inproc_client.who_has([b])[b.key]) == [worker_b]


# --- Future -----------------------------------------------------------------------


def test_result_timeout_raises_trioflow_timeout_error(inproc_client, tmp_path):
    assert issubclass(trioflow.TimeoutError, TimeoutError)
    release = tmp_path / "release"
    try:
        future = inproc_client.submit(wait_for_path, str(release))
        with pytest.raises(trioflow.TimeoutError):
            future.result(timeout=0.2)
    finally:
        release.touch()
    assert future.result(timeout=10) is True


def test_future_status_while_pending_and_finished(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        future = inproc_client.submit(wait_for_path, str(release))
        assert isinstance(future.key, str) and future.key
        assert future.status == "pending"
        assert not future.done()
        assert not future.cancelled()
    finally:
        release.touch()
    assert future.result(timeout=10) is True
    assert future.status == "finished"
    assert future.done()
    assert not future.cancelled()


def test_future_status_error(inproc_client):
    future = inproc_client.submit(inc, "x")
    wait_until(future.done, message="erred future done")
    assert future.status == "error"
    assert isinstance(future.exception(timeout=10), TypeError)


def test_cancel_marks_future_cancelled(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        future = inproc_client.submit(wait_for_path, str(release))
        future.cancel()
        wait_until(future.cancelled, message="future cancelled")
        assert future.status == "cancelled"
        with pytest.raises(trioflow.CancelledError):
            future.result(timeout=10)
    finally:
        release.touch()


def test_future_repr_shows_status_and_result_type(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        future = inproc_client.submit(wait_for_path, str(release))
        text = repr(future)
        assert "pending" in text and future.key in text
    finally:
        release.touch()
    future.result(timeout=10)
    text = repr(future)
    assert "finished" in text and "bool" in text and future.key in text
    number = inproc_client.submit(inc, 1)
    number.result(timeout=10)
    assert "int" in repr(number)


# --- get, wait, cluster information ---------------------------------------------


def test_client_get_runs_task_graph(inproc_client):
    graph = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
    assert inproc_client.get(graph, "z") == 3
    assert list(inproc_client.get(graph, ["y", "z"])) == [2, 3]


def test_nthreads_and_ncores_map_addresses_to_threads(inproc_client):
    nthreads = inproc_client.nthreads()
    assert len(nthreads) == 2
    assert all(isinstance(a, str) for a in nthreads)
    assert all(n == 2 for n in nthreads.values())
    assert inproc_client.ncores() == nthreads


def test_scheduler_info_lists_workers(inproc_client):
    info = inproc_client.scheduler_info()
    workers = info["workers"]
    assert set(workers) == set(inproc_client.nthreads())
    for address, worker in workers.items():
        assert worker["nthreads"] == 2
        assert isinstance(worker["memory_limit"], int)
        assert "name" in worker
    assert isinstance(info["address"], str)


def test_who_has_and_has_what(inproc_client):
    worker_a, worker_b = _two_workers(inproc_client)
    future = inproc_client.submit(inc, 1, workers=[worker_a])
    future.result(timeout=10)
    assert list(inproc_client.who_has([future])[future.key]) == [worker_a]
    assert list(inproc_client.who_has()[future.key]) == [worker_a]
    has_what = inproc_client.has_what()
    assert set(has_what) == {worker_a, worker_b}
    assert future.key in has_what[worker_a]
    assert future.key not in has_what[worker_b]


def test_wait_for_workers(inproc_client):
    inproc_client.wait_for_workers(2, timeout=5)
    inproc_client.wait_for_workers(n_workers=1, timeout=5)
    with pytest.raises(TimeoutError):
        inproc_client.wait_for_workers(3, timeout=0.5)


def test_wait_returns_done_and_not_done(inproc_client, tmp_path):
    futures = inproc_client.map(inc, range(5))
    done, not_done = trioflow.wait(futures, timeout=10)
    assert done == set(futures) and not not_done

    release = tmp_path / "release"
    try:
        blocked = inproc_client.submit(wait_for_path, str(release))
        quick = inproc_client.submit(inc, 100)
        done, not_done = trioflow.wait(
            [blocked, quick], timeout=10, return_when="FIRST_COMPLETED"
        )
        assert quick in done and blocked in not_done
        with pytest.raises(TimeoutError):
            trioflow.wait([blocked], timeout=0.2)
    finally:
        release.touch()
    done, not_done = trioflow.wait([blocked, quick], timeout=10)
    assert done == {blocked, quick} and not not_done


def test_run_on_scheduler(inproc_client):
    assert inproc_client.run_on_scheduler(os.getpid) == os.getpid()
    assert inproc_client.run_on_scheduler(add, 1, 2) == 3


def test_run_on_every_worker(inproc_client):
    pids = inproc_client.run(os.getpid)
    assert set(pids) == set(inproc_client.nthreads())
    assert set(pids.values()) == {os.getpid()}
    worker_a, _ = _two_workers(inproc_client)
    assert inproc_client.run(add, 1, 2, workers=[worker_a]) == {worker_a: 3}


def test_second_client_shares_cluster_by_address(inproc_client):
    with Client(scheduler_address(inproc_client)) as other:
        a = inproc_client.submit(inc, 1)
        b = other.submit(inc, 1)
        assert a.key == b.key
        assert b.result(timeout=10) == 2
        assert set(other.nthreads()) == set(inproc_client.nthreads())


# --- processes=True ---------------------------------------------------------------


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


@pytest.mark.timeout(120)
def test_processes_dependency_moves_between_workers(proc_client):
    worker_a, worker_b = _two_workers(proc_client)
    a = proc_client.submit(inc, 1, workers=[worker_a])
    b = proc_client.submit(inc, a, workers=[worker_b])
    assert b.result(timeout=30) == 3
    assert worker_a in proc_client.who_has([a])[a.key]
    assert list(proc_client.who_has([b])[b.key]) == [worker_b]


@pytest.mark.timeout(120)
def test_processes_local_cluster_honours_scheduler_port_and_memory_limit():
    port = _free_port()
    with LocalCluster(
        processes=True,
        n_workers=1,
        threads_per_worker=1,
        scheduler_port=port,
        memory_limit="1GiB",
        dashboard_address=None,
    ) as cluster, Client(cluster) as client:
        client.wait_for_workers(1, timeout=30)
        assert scheduler_address(client).endswith(f":{port}")
        (worker,) = client.scheduler_info()["workers"].values()
        assert worker["memory_limit"] == 2**30
        assert client.submit(inc, 1).result(timeout=30) == 2
