"""Clients and their cluster: starting a client (its keywords, a cluster or
an address, asynchronous ones, refused mixes of loops), closing it without
leftovers, what it tells about the cluster (nthreads, scheduler_info, run,
run_on_scheduler, wait_for_workers), restart and shutdown; a LocalCluster
scaled by hand or adapting to the load, its logs, and workers' resources from
dask's config."""

import asyncio
import os
import threading

import dask
import pytest
import trio

import trioflow
from trioflow import CancelledError, Client, LocalCluster, Worker, wait
from _tasks import add, getpid, inc, slow_inc, wait_for_path
from _util import (
    async_client,
    free_port,
    scheduler_address,
    scheduler_task_count,
    wait_until,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


# --- starting and closing a client ---------------------------------------------------------


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


def test_client_constructor_keywords_are_accepted(inproc_client, tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    inproc_client.write_scheduler_file(str(scheduler_file))
    with Client(address=None, loop=None, timeout=10, set_as_default=False,
                scheduler_file=str(scheduler_file), security=None, asynchronous=False,
                name="keywords", heartbeat_interval=1000, serializers=None, deserializers=None,
                extensions=None, direct_to_workers=True, connection_limit=512) as client:
        assert client.submit(inc, 1).result(timeout=10) == 2
    client.close(timeout=10)


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


def test_context_manager_client_leaves_nothing_behind():
    with Client(processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None) as c:
        assert c.gather(c.map(inc, range(20))) == list(range(1, 21))


def test_second_client_shares_cluster_by_address(inproc_client):
    with Client(scheduler_address(inproc_client)) as other:
        a = inproc_client.submit(inc, 1)
        b = other.submit(inc, 1)
        assert a.key == b.key
        assert b.result(timeout=10) == 2
        assert set(other.nthreads()) == set(inproc_client.nthreads())


@pytest.mark.timeout(120)
def test_processes_local_cluster_honours_scheduler_port_and_memory_limit():
    port = free_port()
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


# --- what the client tells about the cluster -----------------------------------------------


def test_cluster_information_methods(face):
    async def scenario(c):
        await face(c.wait_for_workers(2, timeout=10))
        nthreads = await face(c.nthreads())
        assert sorted(nthreads.values()) == [2, 2]
        assert await face(c.ncores()) == nthreads
        info = await face(c.scheduler_info())
        assert set(info["workers"]) == set(nthreads)
        future = c.submit(inc, 1)
        await face.result(future)
        assert (await face(c.who_has([future])))[future.key]
        assert any(future.key in keys for keys in (await face(c.has_what())).values())
        assert await face(c.run(os.getpid)) == {address: os.getpid() for address in nthreads}
        assert await face(c.run_on_scheduler(add, 1, 2)) == 3
        assert c.dashboard_link is None
    face.run(scenario)


def test_nthreads_and_ncores_map_addresses_to_threads(face):
    async def scenario(c):
        nthreads = await face(c.nthreads())
        assert len(nthreads) == 2
        assert all(isinstance(a, str) for a in nthreads)
        assert all(n == 2 for n in nthreads.values())
        assert await face(c.ncores()) == nthreads
    face.run(scenario)


def test_scheduler_info_lists_workers(face):
    async def scenario(c):
        info = await face(c.scheduler_info())
        workers = info["workers"]
        assert set(workers) == set(await face(c.nthreads()))
        for address, worker in workers.items():
            assert worker["nthreads"] == 2
            assert isinstance(worker["memory_limit"], int)
            assert "name" in worker
        assert isinstance(info["address"], str)
    face.run(scenario)


def test_scheduler_info_and_dashboard_link(face):
    async def scenario(c):
        info = await face(c.scheduler_info())
        assert info["type"] == "Scheduler"
        assert info["address"] == c.scheduler_address
        assert set(info["workers"]) == set(await face(c.nthreads()))
        for worker in info["workers"].values():
            assert worker["nthreads"] == 2
        assert c.dashboard_link is None
    face.run(scenario)


def test_wait_for_workers(face):
    async def scenario(c):
        await face(c.wait_for_workers(2, timeout=5))
        await face(c.wait_for_workers(n_workers=1, timeout=5))
        with pytest.raises(TimeoutError):
            await face(c.wait_for_workers(3, timeout=0.5))
    face.run(scenario)


def test_run_on_scheduler(face):
    async def scenario(c):
        assert await face(c.run_on_scheduler(os.getpid)) == os.getpid()
        assert await face(c.run_on_scheduler(add, 1, 2)) == 3
    face.run(scenario)


def test_run_on_every_worker(face):
    async def scenario(c):
        pids = await face(c.run(os.getpid))
        assert set(pids) == set(await face(c.nthreads()))
        assert set(pids.values()) == {os.getpid()}
        worker_a, _ = await face.two_workers(c)
        assert await face(c.run(add, 1, 2, workers=[worker_a])) == {worker_a: 3}
    face.run(scenario)


def test_run_on_workers(face):
    async def in_loop(dask_worker):
        await trio.sleep(0)
        return trio.lowlevel.current_trio_token() is dask_worker.trio_token

    async def scenario(c):
        workers = sorted((await face(c.scheduler_info()))["workers"])
        assert await face(c.run(lambda dask_worker: dask_worker.address)) == {
            w: w for w in workers}
        assert await face(c.run(lambda x, y=0: x + y, 1, y=2, workers=[workers[0]])) == {
            workers[0]: 3}
        assert await face(c.run(lambda dask_worker: dask_worker.nthreads,
                                workers=workers[1])) == {workers[1]: 2}
        assert await face(c.run(in_loop)) == {w: True for w in workers}
        with pytest.raises(ZeroDivisionError):
            await face(c.run(lambda: 1 / 0))
        errors = await face(c.run(lambda: 1 / 0, on_error="return"))
        assert all(isinstance(e, ZeroDivisionError) for e in errors.values())
    face.run(scenario)


def test_run_on_scheduler_passes_the_scheduler_and_runs_async_functions(face):
    def count_workers(dask_scheduler):
        return len(dask_scheduler.state.workers)

    async def its_address(dask_scheduler=None):
        await trio.sleep(0)
        return dask_scheduler.address

    async def asyncio_code(dask_scheduler=None):
        await asyncio.sleep(0)  # dask runs these on its scheduler's asyncio loop
        return len(dask_scheduler.state.workers)

    async def scenario(c):
        assert await face(c.run_on_scheduler(count_workers)) == 2
        assert await face(c.run_on_scheduler(lambda a, b: a * b, 6, b=7)) == 42
        assert await face(c.run_on_scheduler(its_address)) == c.scheduler_address
        assert await face(c.run_on_scheduler(asyncio_code)) == 2
    face.run(scenario)


# --- restart and shutdown ------------------------------------------------------------------


def test_restart_cancels_the_futures_and_the_workers_come_back(face):
    async def scenario(c):
        future = c.submit(inc, 1)
        futures = c.map(inc, range(10, 20))
        await face(wait(futures + [future]))
        await face(c.restart())
        assert future.cancelled() and all(f.cancelled() for f in futures)
        with pytest.raises(CancelledError, match="restart"):
            await face.result(future)
        await face(c.wait_for_workers(2, timeout=10))
        assert await face.result(c.submit(inc, 1)) == 2
    face.run(scenario)


def test_restart_cancels_every_future_with_a_clear_message(inproc_client, tmp_path):
    release = tmp_path / "release"
    try:
        finished = inproc_client.submit(inc, 1)
        finished.result(timeout=10)
        running = inproc_client.submit(wait_for_path, str(release))
        inproc_client.restart(timeout=30, wait_for_workers=True)
        assert finished.cancelled() and running.cancelled()
        with pytest.raises(CancelledError, match="restart"):
            finished.result(timeout=10)
        with pytest.raises(CancelledError, match="restart"):
            running.result(timeout=10)
    finally:
        release.touch()
    inproc_client.wait_for_workers(2, timeout=10)
    assert scheduler_task_count(inproc_client) == 0
    # the same computation can be submitted again
    assert inproc_client.submit(inc, 1).result(timeout=10) == 2


def test_processes_restart_replaces_the_worker_processes(proc_client):
    pids = set(proc_client.run(getpid).values())
    assert len(pids) == 2 and os.getpid() not in pids
    future = proc_client.submit(inc, 1)
    future.result(timeout=30)
    proc_client.restart()
    with pytest.raises(CancelledError, match="restart"):
        future.result(timeout=10)
    proc_client.wait_for_workers(2, timeout=30)
    new_pids = set(proc_client.run(getpid).values())
    assert len(new_pids) == 2 and not (new_pids & pids)
    assert proc_client.submit(inc, 2).result(timeout=30) == 3


def test_shutdown_closes_the_cluster_and_the_client():
    cluster = LocalCluster(processes=False, n_workers=2, threads_per_worker=1)
    try:
        client = Client(cluster, set_as_default=False)
        assert client.submit(inc, 1).result(timeout=10) == 2
        client.shutdown()
        assert client.status == "closed"
        assert cluster.status == "closed"
    finally:
        cluster.close()


def test_shutdown_by_address_stops_the_scheduler():
    with LocalCluster(processes=False, protocol="ws", n_workers=1,
                      threads_per_worker=1) as cluster:
        address = cluster.scheduler_address
        client = Client(address, set_as_default=False)
        client.shutdown()
        assert client.status == "closed"
        with pytest.raises((trioflow.TimeoutError, trioflow.CommClosedError, OSError)):
            Client(address, timeout=2, set_as_default=False).close()


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


# --- scaling, adapting, logs and resources (issue 12, points 3 and 6) -----------------
# The cluster calls dask's examples use: LocalCluster.scale, adapt,
# get_logs, scheduler_address, workers, scheduler.workers;
# distributed.worker.resources from dask.config and the environment; a task
# no worker can run is logged instead of waiting silently.


def _scale_keeps_data(cluster, client):
    client.wait_for_workers(1, timeout=20)
    cluster.scale(3)
    assert len(cluster.workers) == 3
    assert len(client.scheduler_info()["workers"]) == 3
    data = client.scatter(list(range(30)))
    assert len({w for holders in client.who_has(data).values() for w in holders}) == 3
    cluster.scale(1)
    assert len(cluster.workers) == 1
    assert len(client.scheduler_info()["workers"]) == 1
    # graceful: what only the retired workers held was moved first
    assert client.gather(data) == list(range(30))
    assert set(client.who_has(data)) == {f.key for f in data}
    cluster.scale(2)  # up again: new names, a working worker
    assert len(cluster.workers) == 2 and len(set(cluster.workers)) == 2
    assert client.submit(inc, 1, pure=False).result(timeout=20) == 2


def test_scale_up_and_down_in_process():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        _scale_keeps_data(cluster, client)


def test_scale_up_and_down_with_worker_processes():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        _scale_keeps_data(cluster, client)
        pids = client.run(getpid)
        views = cluster.scheduler.workers
        assert {a: views[a].pid for a in views} == pids
        assert all(views[a].pid != os.getpid() for a in views)


def test_scheduler_workers_carry_dask_worker_state_fields():
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=False, memory_limit="1GB",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=20)
        views = cluster.scheduler.workers
        assert set(views) == set(client.scheduler_info()["workers"])
        names = set()
        for address, ws in views.items():
            assert ws.address == address
            assert ws.nthreads == 2
            assert ws.memory_limit == 10**9
            assert ws.pid == os.getpid()  # in-process workers
            names.add(ws.name)
        assert names == set(cluster.workers) == {0, 1}
        assert cluster.scheduler_address == client.scheduler_address
        # what run_on_scheduler's dask_scheduler shows too
        assert client.run_on_scheduler(
            lambda dask_scheduler: {a: ws.nthreads for a, ws in dask_scheduler.workers.items()}
        ) == {a: 2 for a in views}


def test_get_logs_has_the_cluster_the_scheduler_and_each_worker():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.wait_for_workers(2, timeout=30)
        logs = cluster.get_logs()
        assert set(logs) == {"Cluster", "Scheduler", *client.scheduler_info()["workers"]}
        assert "joined" in logs["Scheduler"]
        assert all(isinstance(text, str) for text in logs.values())
        assert set(cluster.get_logs(cluster=False, workers=False)) == {"Scheduler"}


def test_adapt_scales_with_the_load_and_back():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # dask's rules: 20 tasks of 0.2 s are 4 s of work, 4 workers for target_duration=1s
        adaptive = cluster.adapt(minimum=1, maximum=3, interval="50ms", wait_count=2,
                                 target_duration="1s")
        futures = client.map(slow_inc, range(20))
        wait_until(lambda: len(cluster.workers) == 3, timeout=20, message="scaled up to 3")
        assert client.gather(futures) == list(range(1, 21))
        wait_until(lambda: len(cluster.workers) == 1, timeout=20, message="back to minimum")
        assert [direction for _, direction, _ in adaptive.log][:1] == ["up"]
        assert max(n for _, _, n in adaptive.log) == 3  # never past maximum
        adaptive.stop()
        with pytest.raises(ValueError, match="minimum"):
            cluster.adapt(minimum=3, maximum=1)


def test_get_client_gives_the_clusters_client_and_missing_names_say_what_to_use():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        with cluster.get_client() as client:  # none yet: a new one, of this cluster
            assert client.cluster is cluster
            assert client.submit(inc, 1).result() == 2
            assert cluster.get_client() is client  # the current one, not another
        with Client(cluster) as mine:
            assert cluster.get_client() is mine
        for name, advice in [("loop", "asynchronous=True"), ("sync", "client.sync"),
                             ("start_worker", "scale")]:
            with pytest.raises(AttributeError, match=advice):
                getattr(cluster, name)
        with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
            cluster.nonsense


class TaggedWorker(Worker):
    tag = "mine"


def test_worker_class_and_scheduler_kwargs_as_dask_takes_them():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None, worker_class=TaggedWorker,
                      scheduler_kwargs={"allowed_failures": 7}) as cluster, \
            Client(cluster) as client:
        assert [type(w) for w in cluster.workers.values()] == [TaggedWorker] * 2
        assert client.run(lambda dask_worker: dask_worker.tag) == {
            w.address: "mine" for w in cluster.workers.values()}
        assert cluster.scheduler.state.allowed_failures == 7
        cluster.scale(3)  # new workers are of the class too
        assert {type(w) for w in cluster.workers.values()} == {TaggedWorker}


def test_a_cluster_still_adapting_closes():
    # dask's examples close the cluster without stopping adapt() first
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                           dashboard_address=None)
    try:
        cluster.adapt(minimum=1, maximum=2, interval="50ms")
        with Client(cluster) as client:
            assert client.submit(slow_inc, 1).result() == 2
    finally:
        done = threading.Event()
        closer = threading.Thread(target=lambda: (cluster.close(), done.set()), daemon=True)
        closer.start()
        assert done.wait(30), "LocalCluster.close() hung while adapt() was running"
    assert cluster.status == "closed"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_an_asynchronous_cluster_scales_and_gives_logs(anyio_backend):
    async with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                            asynchronous=True, dashboard_address=None) as cluster:
        async with Client(cluster, asynchronous=True) as client:
            await cluster.scale(2)
            assert len(cluster.workers) == 2
            data = await client.scatter(list(range(10)))
            pending = cluster.scale(1)  # starts at once, as dask's
            await pending
            assert len(cluster.workers) == 1
            assert await client.gather(data) == list(range(10))
            logs = await cluster.get_logs()
            assert "Scheduler" in logs and len(logs) == 3


def test_resources_from_dask_config_reach_worker_processes():
    with dask.config.set({"distributed.worker.resources.GPU": 2}):
        with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            client.wait_for_workers(1, timeout=30)
            info = client.scheduler_info()["workers"]
            assert [w["resources"] for w in info.values()] == [{"GPU": 2}]
            assert client.submit(inc, 1, resources={"GPU": 1}).result(timeout=20) == 2


def test_resources_from_the_environment_as_dask_reads_them(monkeypatch):
    # dask lowercases the names it reads from DASK_* variables: 'gpu'
    monkeypatch.setenv("DASK_DISTRIBUTED__WORKER__RESOURCES__GPU", "3")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        info = client.scheduler_info()["workers"]
        assert [w["resources"] for w in info.values()] == [{"gpu": 3}]
        assert client.submit(inc, 1, resources={"gpu": 3}).result(timeout=20) == 2


def test_a_task_no_worker_can_run_is_logged_and_in_its_story():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, resources={"GPU": 1},
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # a key of its own: the scheduler logs of an in-process cluster are the
        # process's, which hold earlier tests' records of inc(1)
        future = client.submit(inc, 1, resources={"TPU": 1}, pure=False)

        def logged():
            return [text for _, text in client.get_scheduler_logs()
                    if "cannot run on any current worker" in text and future.key in text]

        [line] = wait_until(logged, timeout=10, message="the unrunnable task is logged")
        assert "TPU" in line and "GPU=1" in line
        moves = [(start, finish) for where, key, start, finish, *_ in client.story(future)
                 if where == "scheduler"]
        assert ("waiting", "no-worker") in moves
        assert not future.done()
        # it runs once a worker that fits joins
        cluster.resources = {"TPU": 1}
        cluster.scale(2)
        assert future.result(timeout=20) == 2
        # logged once, not at every look
        assert len(logged()) == 1
