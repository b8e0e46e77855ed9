"""SpecCluster, ProcessInterface, scale and adapt (issue 18, point 3).

The deployers here are written as dask-jobqueue and dask-kubernetes write
theirs, against dask's interface: subclass ProcessInterface, start a
process in ``start()`` with asyncio, read its address, stop it in
``close()``.  Only the import line differs from code written for dask."""

import asyncio
import os
import sys
import time

import pytest
import trio

# for dask: from distributed.deploy.spec import ProcessInterface, SpecCluster
from trioflow.deploy.spec import ProcessInterface, SpecCluster
from trioflow import Client, LocalCluster, Scheduler, wait
from _util import wait_until

_STARTED: list = []  # every process the deployers started, killed at the end if alive


@pytest.fixture(autouse=True)
def _kill_leftovers():
    yield
    for proc in _STARTED:
        if proc.returncode is None:
            try:
                proc.kill()
            except ProcessLookupError:
                pass
    _STARTED.clear()


async def _start_cli(*args, marker):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "trioflow", *args, stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "TRIOFLOW_DASHBOARD_ADDRESS": "none"})
    _STARTED.append(proc)
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        if not line:
            raise RuntimeError(f"trioflow {args[0]} exited before it started")
        if line.startswith(marker):
            return proc, line[len(marker):].split()[0]


class SubprocessWorker(ProcessInterface):
    """One `trioflow worker` process per worker, as a job queue would run it."""

    def __init__(self, scheduler, name=None, nthreads=1):
        super().__init__(scheduler=scheduler, name=name)
        self.scheduler = scheduler
        self.name = name
        self.nthreads = nthreads
        self.proc = None

    async def start(self):
        self.proc, self.address = await _start_cli(
            "worker", self.scheduler, "--no-nanny", "--name", str(self.name),
            "--nthreads", str(self.nthreads), marker="trioflow worker ")
        await super().start()

    async def close(self):
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.communicate()  # to the end of its output, pipes closed
        await super().close()


class SubprocessScheduler(ProcessInterface):
    """The scheduler in a process of its own, as dask-kubernetes runs it in a pod."""

    async def start(self):
        self.proc, self.address = await _start_cli(
            "scheduler", "--port", "0", "--no-dashboard", marker="trioflow scheduler at ")
        await super().start()

    async def close(self):
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.communicate()  # to the end of its output, pipes closed
        await super().close()


WORKER = {"cls": SubprocessWorker, "options": {"nthreads": 1}}


def inc(x):
    return x + 1


def slow_inc(x, delay=0.2):
    time.sleep(delay)
    return x + 1


def _procs(cluster):
    return [w.proc for w in cluster.workers.values()]


def test_a_dask_style_deployer_runs_scales_and_stops_its_workers():
    with SpecCluster(scheduler={"cls": Scheduler, "options": {"dashboard_address": None}},
                     workers={0: WORKER, 1: WORKER}, worker=WORKER) as cluster:
        assert cluster.scheduler.token  # made for the cluster
        procs = _procs(cluster)
        with cluster.get_client() as client:  # dask's Cluster.get_client, on any SpecCluster
            assert client.cluster is cluster and cluster.get_client() is client
            client.wait_for_workers(2, timeout=30)
            names = {w["name"] for w in client.scheduler_info()["workers"].values()}
            assert names == {"0", "1"}
            assert client.gather(client.map(inc, range(10))) == list(range(1, 11))
            cluster.scale(3)
            assert set(cluster.workers) == {0, 1, 2}
            client.wait_for_workers(3, timeout=30)
            data = client.scatter(list(range(30)))
            assert len({w for ws in client.who_has(data).values() for w in ws}) == 3
            procs += _procs(cluster)
            cluster.scale(1)
            assert len(cluster.workers) == 1 and len(client.scheduler_info()["workers"]) == 1
            # retired gracefully: what only the closed workers held moved first
            assert client.gather(data) == list(range(30))
            with pytest.raises(ValueError, match="memory_limit"):
                cluster.scale(memory="4GB")
            cluster.scale(cores=2)  # the spec's nthreads=1: two workers
            assert len(cluster.workers) == 2
            procs += _procs(cluster)
    assert all(proc.returncode is not None for proc in procs)


def test_a_scheduler_from_a_deployer_and_adapt_under_a_changing_load():
    # the cluster reaches this scheduler over the wire: retire and adaptive_target too
    with SpecCluster(scheduler={"cls": SubprocessScheduler, "options": {}},
                     workers={}, worker=WORKER) as cluster:
        scheduler_proc = cluster.scheduler.proc
        with Client(cluster) as client:
            adaptive = cluster.adapt(minimum=0, maximum=3, interval="100ms", wait_count=3,
                                     target_duration="1s")
            # 12 tasks of 0.3 s: about 4 s of work, more than one second per thread
            futures = client.map(slow_inc, range(12), delay=0.3)
            wait_until(lambda: len(cluster.workers) == 3, timeout=30, message="grew to 3")
            kept = client.scatter(list(range(5)))  # while all three are busy
            wait(futures)
            # the results and the scattered data stay on the workers as they go
            wait_until(lambda: len(cluster.workers) == 1, timeout=30,
                       message="shrank once idle, down to one worker holding all the data")
            assert client.gather(futures) == list(range(1, 13))
            assert client.gather(kept) == list(range(5))  # nothing lost on the way down
            assert ("up", 3) in [(d, n) for _, d, n in adaptive.log]
            assert "down" in [d for _, d, _ in adaptive.log]
            # more work: it grows again
            futures = client.map(slow_inc, range(100, 112), delay=0.3)
            wait_until(lambda: len(cluster.workers) >= 2, timeout=30, message="grew again")
            assert client.gather(futures) == list(range(101, 113))
            adaptive.stop()
            procs = _procs(cluster)
    assert scheduler_proc.returncode is not None
    assert all(proc.returncode is not None for proc in procs)


def test_adaptive_target_follows_dasks_rules():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        scheduler = cluster.scheduler
        assert scheduler.adaptive_target() == 0  # idle: its one worker may go
        futures = client.map(slow_inc, range(4), delay=0.5, pure=False)
        wait_until(lambda: sum(len(ws.processing) for ws in scheduler.state.workers.values())
                   + len(scheduler.state.queued_set) == 4, timeout=10, message="submitted")
        # 4 tasks of unknown duration (0.5 s each) = 2 s of work
        assert scheduler.adaptive_target(target_duration="0.5s") == 2  # 4 threads, 2 per worker
        assert scheduler.adaptive_target(target_duration="10s") == 1
        client.gather(futures)
        wait_until(lambda: not any(ws.processing for ws in scheduler.state.workers.values()),
                   timeout=10)
        [address] = scheduler.state.workers
        assert scheduler.workers_to_close(target=0) == []  # the last one holds the results
        del futures
        wait_until(lambda: not scheduler.state.tasks, timeout=10, message="released")
        assert scheduler.workers_to_close(target=0) == [address]  # idle, holding nothing
        assert scheduler.workers_to_close(n=1, attribute="name") == [0]


def test_specs_are_checked():
    with pytest.raises(TypeError, match="scheduler="):
        SpecCluster(workers={})
    with pytest.raises(TypeError, match="unknown field"):
        SpecCluster(scheduler={"cls": Scheduler, "opts": {}})
    with pytest.raises(TypeError, match=r"workers\[0\]"):
        SpecCluster(scheduler={"cls": Scheduler}, workers={0: Scheduler})


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_an_asyncio_deployer_under_trio(anyio_backend):
    # under trio.run: the asyncio deployer runs on the side loop
    async with SpecCluster(scheduler={"cls": Scheduler, "options": {}},
                           workers={"a": WORKER}, asynchronous=True) as cluster:
        async with Client(cluster, asynchronous=True) as client:
            await client.wait_for_workers(1, timeout=30)
            assert await client.submit(inc, 1) == 2
            proc = cluster.workers["a"].proc
        with trio.fail_after(30):
            await cluster.scale(0)
        assert proc.returncode is not None and not cluster.workers
