"""compute/persist send a collection's expression and the scheduler builds
its graph (server/graph_builds.py): the caller does not materialize the
graph, results match dask, futures inside the expression and messages sent
while the build runs keep their meaning, a build that fails errs the keys
with the reason, and a scheduler without dask gets the graph from the client."""
from __future__ import annotations

import pytest
import trio

import dask
import dask.array as da
import dask.bag as db

from trioflow import Client
from trioflow.client import graph_calls
from trioflow.client.future import Future
from trioflow.server import graph_builds

from _util import wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def client(check_leaks):
    with Client(processes=False, n_workers=2, threads_per_worker=1,
                dashboard_address=None) as c:
        yield c


def _no_graph_here(dsk):
    raise AssertionError("compute() materialized the graph in the client")


def test_compute_and_persist_leave_the_graph_to_the_scheduler(client, monkeypatch):
    assert client._core.scheduler_builds_graphs
    monkeypatch.setattr(graph_calls, "as_dict", _no_graph_here)
    x = da.ones(40_000, chunks=10).sum()  # ~5,300 tasks: several parts
    assert client.compute(x).result(timeout=60) == 40_000
    b = db.from_sequence(range(1_000), npartitions=20).map(lambda v: 3 * v).filter(
        lambda v: v % 2)
    persisted = client.persist(b)
    assert client.compute(persisted.sum()).result(timeout=60) == b.sum().compute(
        scheduler="sync")
    delayed = dask.delayed(sum)([dask.delayed(abs)(-i) for i in range(50)])
    assert client.compute(delayed, sync=True) == sum(range(50))


def test_options_of_compute_reach_every_task_the_scheduler_builds(client):
    chosen = sorted(client.scheduler_info()["workers"])[1]
    x = da.arange(3_000, chunks=10).sum()
    future = client.compute(x, workers=[chosen], allow_other_workers=False, priority=5)
    assert future.result(timeout=60) == sum(range(3_000))
    assert list(client.who_has(future)[future.key]) == [chosen]

    def ran_where(dask_scheduler=None):
        return {w for ts in dask_scheduler.state.tasks.values()
                for w in ts.worker_restrictions or ()}
    restrictions = client.run_on_scheduler(ran_where)
    assert restrictions == {chosen}


def test_client_builds_when_told_to(client, monkeypatch):
    built = []
    monkeypatch.setattr(graph_calls, "as_dict", lambda d: built.append(1) or dict(
        d.__dask_graph__()))
    with dask.config.set({"trioflow.graph-build": "client"}):
        assert client.compute(da.arange(100, chunks=10).sum()).result(timeout=60) == 4950
    assert built


def _scheduler_task_count(dask_scheduler=None):
    return len(dask_scheduler.state.tasks)


def test_futures_in_an_expression_outlive_a_release_sent_during_the_build(client):
    x = da.arange(30_000, chunks=10) + 1
    # the persisted collection is dropped as soon as compute returns: its
    # release reaches the scheduler while the second graph is being built
    total = client.compute(client.persist(x).sum())
    assert total.result(timeout=60) == int(x.sum().compute(scheduler="sync"))
    del total
    wait_until(lambda: client.run_on_scheduler(_scheduler_task_count) == 0, timeout=30)


class _BreaksWhenUnpickled:
    def __reduce__(self):
        return (_explode, ())


def _explode():
    raise ValueError("this object cannot be rebuilt here")


def test_a_graph_that_cannot_be_built_errs_its_keys_and_nothing_else(client):
    broken = dask.delayed(lambda v: v)(_BreaksWhenUnpickled())
    future = client.compute(broken)
    with pytest.raises(RuntimeError, match="could not build the graph.*cannot be rebuilt here"):
        future.result(timeout=30)
    assert client.compute(da.ones(100, chunks=10).sum()).result(timeout=30) == 100


def test_garbage_expression_bytes_err_the_keys(client):
    future = Future("garbage-expression-1", client, inform=False)
    client._core.send({"op": "update-graph-expr", "expr": b"not a pickle",
                       "wanted": [future.key]})
    with pytest.raises(RuntimeError, match="could not build the graph"):
        future.result(timeout=30)
    assert client.submit(abs, -3).result(timeout=30) == 3


def test_a_scheduler_without_dask_gets_the_graph_from_the_client(monkeypatch, check_leaks):
    monkeypatch.setattr(graph_builds, "dask_available", lambda: False)
    with Client(processes=False, n_workers=1, dashboard_address=None) as c:
        assert not c._core.scheduler_builds_graphs
        x = da.ones(5_000, chunks=10).sum()
        assert c.compute(x).result(timeout=60) == 5_000


def test_async_clients_compute_through_the_scheduler(check_leaks):
    async def main():
        async with Client(processes=False, n_workers=1, asynchronous=True,
                          dashboard_address=None) as c:
            assert c._core.scheduler_builds_graphs
            future = c.compute(da.arange(3_000, chunks=10).sum())
            return await future

    assert trio.run(main) == sum(range(3_000))
