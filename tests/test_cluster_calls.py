"""The cluster calls dask's examples use (issue 12, point 3) and resources
from dask's config (point 6): ``LocalCluster.scale``, ``adapt``,
``get_logs``, ``scheduler_address``, ``workers``, ``scheduler.workers``;
``distributed.worker.resources`` from ``dask.config`` and the environment;
a task no worker can run is logged instead of waiting silently."""

import os
import threading
import time

import dask
import pytest

from trioflow import Client, LocalCluster, Worker
from _util import wait_until


def inc(x):
    return x + 1


def slow_inc(x):
    time.sleep(0.2)
    return x + 1


def pid():
    return os.getpid()


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
        pids = client.run(pid)
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


# --- resources from dask's config (point 6) ------------------------------------


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
        future = client.submit(inc, 1, resources={"TPU": 1})

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
