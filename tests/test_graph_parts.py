"""Dask graphs go to the scheduler in parts of nodes pickled together
(client/graphs.py): results stay right across part boundaries, with
functions only cloudpickle can write and futures nested in arguments, and
the packed graph is small (what the nodes share is written once per part)."""
from __future__ import annotations

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

from trioflow import Client  # noqa: E402
from trioflow.client.graphs import PART_TASKS, collections_graph, graph_tasks  # noqa: E402

from _util import wait_until  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def _add(*xs):
    return sum(xs)


@pytest.fixture
def client():
    with Client(processes=False, n_workers=2, threads_per_worker=1,
                dashboard_address=None) as c:
        yield c


def test_graph_across_parts_matches_dask(client):
    offset = client.submit(_add, 5, 6)  # a future nested in a task's arguments
    n = PART_TASKS + 200
    square = lambda x: x * x  # noqa: E731  (only cloudpickle can write it)
    dsk = {("leaf", i): (square, i) for i in range(n)}
    dsk.update({("pair", i): (_add, ("leaf", 2 * i), ("leaf", 2 * i + 1)) for i in range(n // 2)})
    pairs = [("pair", i) for i in range(n // 2)]
    expected = dask.get(dict(dsk, total=(_add, *pairs, 11)), "total")
    assert client.get(dict(dsk, total=(_add, *pairs, offset)), "total") == expected

    x = (da.arange(5_000, chunks=10) * 2).sum()
    assert client.compute(x).result(timeout=60) == int(x.compute(scheduler="sync"))


def _graph_parts(dask_scheduler=None):
    return [k for k in dask_scheduler.state.tasks if str(k).startswith("graph-part-")]


def _held_by_the_graph_hold(dask_scheduler=None):
    return [ts.key for ts in dask_scheduler.state.tasks.values()
            if any(c.endswith("/graph-hold") for c in ts.who_wants)]


def test_parts_are_released_with_their_graph(client):
    # ~4,000 tasks: sent in update-graph parts held by the graph hold
    x = client.compute(da.ones(30_000, chunks=10).sum())
    assert x.result(timeout=60) == 30_000
    held = client.run_on_scheduler(_held_by_the_graph_hold)
    assert held == [], held[:5]
    del x
    wait_until(lambda: not client.run_on_scheduler(_graph_parts) and
               client.scheduler_info()["n_tasks"] == 0, timeout=30)


def test_packed_graph_is_small(client):
    x = da.ones(100_000, chunks=10).sum()
    dsk, _ = collections_graph([x], True, finalize=True)
    tasks = graph_tasks(client, dsk, {})
    payload = sum(len(t["run_spec"][1]) for t in tasks if isinstance(t["run_spec"][1], bytes))
    # each task pickled on its own took ~2,150 bytes; parts share what they can
    assert payload / len(tasks) < 300
