"""dask collections on a trioflow cluster: the client as dask's default
scheduler, ``compute``, ``persist`` and ``get``.

Tasks that must run on the cluster call ``get_worker()``, which raises
outside a trioflow task, so a result proves where the work happened.
"""

import pathlib

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
np = pytest.importorskip("numpy")

from trioflow import Client, Future, get_worker, wait  # noqa: E402
from _tasks import double  # noqa: E402
from _util import run_python, wait_until  # noqa: E402


def where_am_i(*args):
    return get_worker().address


def inc(x):
    return x + 1


def add(x, y):
    return x + y


def count_call(path, value):
    """Append a line per call, so a test can tell how often a task ran."""
    with open(path, "a") as f:
        f.write("call\n")
    return value


def plus_one_on_a_worker(block):
    get_worker()  # raises unless this runs as a trioflow task
    return block + 1


def calls(path):
    path = pathlib.Path(path)
    return len(path.read_text().splitlines()) if path.exists() else 0


# --- the default scheduler ----------------------------------------------------


def test_client_becomes_dasks_default_scheduler(inproc_client):
    workers = set(inproc_client.nthreads())
    assert dask.delayed(where_am_i)().compute() in workers
    a, b = dask.compute(dask.delayed(where_am_i)(1), dask.delayed(where_am_i)(2))
    assert {a, b} <= workers


def test_dask_array_computation_runs_on_the_cluster(inproc_client):
    x = da.arange(100, chunks=10)
    y = x.map_blocks(plus_one_on_a_worker, dtype=x.dtype)
    assert int(y.sum().compute()) == sum(range(1, 101))
    np.testing.assert_array_equal(y.compute(), np.arange(1, 101))
    matrix = da.ones((40, 40), chunks=(10, 10))
    assert float((matrix @ matrix.T).sum().compute()) == 40 * 40 * 40


def test_dask_bag_runs_on_the_cluster(inproc_client):
    workers = set(inproc_client.nthreads())
    bag = db.from_sequence(range(10), npartitions=4)
    assert set(bag.map(where_am_i).compute()) <= workers
    assert bag.map(inc).sum().compute() == 55


def _default_scheduler():
    # not a compute(): dask's own threaded scheduler keeps a thread pool alive
    # for the rest of the process, which the leak check would report
    return dask.base.get_scheduler()


def test_set_as_default_false_leaves_dask_on_its_own_scheduler():
    before = _default_scheduler()
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                set_as_default=False) as client:
        assert _default_scheduler() is before
        assert _default_scheduler() != client.get
        with pytest.raises(ValueError, match="not inside a trioflow task"):
            dask.delayed(where_am_i)().compute(scheduler="sync")


def test_closing_the_client_gives_dask_its_own_scheduler_back():
    before = _default_scheduler()
    with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
        (worker,) = client.nthreads()
        assert _default_scheduler() == client.get
        assert dask.delayed(where_am_i)().compute() == worker
    assert _default_scheduler() is before


# --- compute ------------------------------------------------------------------


def test_compute_returns_a_future_per_collection(inproc_client):
    workers = set(inproc_client.nthreads())
    future = inproc_client.compute(dask.delayed(where_am_i)())
    assert isinstance(future, Future)
    assert future.result(timeout=10) in workers

    x = da.arange(10, chunks=5)
    total, mean = inproc_client.compute([x.sum(), x.mean()])
    assert isinstance(total, Future) and isinstance(mean, Future)
    assert inproc_client.gather([total, mean]) == [45, 4.5]
    np.testing.assert_array_equal(inproc_client.compute(x).result(timeout=10), np.arange(10))


def test_compute_sync_returns_values(inproc_client):
    x = dask.delayed(add)(1, 2)
    assert inproc_client.compute(x, sync=True) == 3
    assert inproc_client.compute([x, dask.delayed(inc)(x)], sync=True) == [3, 4]


def test_compute_passes_other_objects_through(inproc_client):
    futures = inproc_client.compute([dask.delayed(inc)(1), 5], traverse=False)
    assert futures[1] == 5
    assert futures[0].result(timeout=10) == 2


def test_compute_traverse_looks_inside_builtin_containers(inproc_client):
    nested = [dask.delayed(inc)(1), {"b": dask.delayed(inc)(2)}]
    (future,) = inproc_client.compute([nested])
    assert future.result(timeout=10) == [2, {"b": 3}]
    (untouched,) = inproc_client.compute([nested], traverse=False)
    assert untouched is nested


def test_compute_with_and_without_graph_optimization(inproc_client):
    x = da.ones(20, chunks=5) + 1
    optimized = inproc_client.compute(x.sum(), optimize_graph=True)
    plain = inproc_client.compute(x.sum(), optimize_graph=False)
    assert optimized.result(timeout=10) == plain.result(timeout=10) == 40


def test_compute_honours_workers_and_retries(inproc_client):
    worker_a, _ = sorted(inproc_client.nthreads())
    future = inproc_client.compute(dask.delayed(where_am_i)(), workers=[worker_a], retries=1)
    assert future.result(timeout=10) == worker_a


def test_computed_futures_release_like_any_other(inproc_client):
    future = inproc_client.compute(dask.delayed(inc)(1))
    assert future.result(timeout=10) == 2
    future.release()
    del future
    wait_until(
        lambda: inproc_client.run_on_scheduler(
            lambda dask_scheduler: len(dask_scheduler.state.tasks)) == 0,
        message="computed graph forgotten")


# --- persist ------------------------------------------------------------------


def test_persist_returns_a_collection_backed_by_futures(inproc_client):
    x = da.arange(20, chunks=5) * 2
    persisted = inproc_client.persist(x)
    assert isinstance(persisted, da.Array)
    assert persisted.shape == x.shape and persisted.chunks == x.chunks
    graph = dict(persisted.__dask_graph__())
    assert len(graph) == 4
    assert all(isinstance(value, Future) for value in graph.values())
    wait(list(graph.values()), timeout=10)
    who_has = inproc_client.who_has(list(graph.values()))
    assert all(who_has[key] for key in graph)
    np.testing.assert_array_equal(persisted.compute(), np.arange(20) * 2)
    assert int(persisted.sum().compute()) == 380


def test_persisted_results_are_reused_not_recomputed(inproc_client, tmp_path):
    log = tmp_path / "calls"
    value = dask.delayed(count_call, pure=True)(str(log), 21)
    persisted = inproc_client.persist(value)
    assert persisted.compute() == 21
    assert dask.delayed(add)(persisted, persisted).compute() == 42
    assert inproc_client.compute(persisted).result(timeout=10) == 21
    assert calls(log) == 1


def test_persist_a_list_of_collections(inproc_client):
    x = da.ones(10, chunks=5)
    y = dask.delayed(inc)(1)
    px, py = inproc_client.persist([x, y])
    assert isinstance(px, da.Array)
    assert int(px.sum().compute()) == 10
    assert py.compute() == 2


# --- get ----------------------------------------------------------------------


def test_get_computes_a_raw_graph(inproc_client):
    graph = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y"), "w": (where_am_i, "z")}
    assert inproc_client.get(graph, "z") == 3
    assert inproc_client.get(graph, ["y", ["z", "x"]]) == [2, [3, 1]]
    assert inproc_client.get(graph, "w") in set(inproc_client.nthreads())


def test_get_sync_false_returns_futures(inproc_client):
    graph = {"x": 1, "y": (inc, "x"), "z": (add, "x", "y")}
    futures = inproc_client.get(graph, ["y", "z"], sync=False)
    assert all(isinstance(f, Future) for f in futures)
    assert inproc_client.gather(futures) == [2, 3]


def test_get_uses_futures_in_the_graph(inproc_client):
    data = inproc_client.scatter(10)
    graph = {"data": data, "result": (inc, "data")}
    assert inproc_client.get(graph, "result") == 11
    computed = inproc_client.submit(inc, 1)
    assert inproc_client.get({"a": computed, "b": (add, "a", 100)}, "b") == 102


def test_default_client_reaches_dask_imported_after_it():
    """``Client()`` does not import dask, yet dask imported later computes on
    the cluster, and stops doing so once the client closes."""
    code = """
import sys
from trioflow import Client, get_worker
with Client(processes=False, n_workers=1, threads_per_worker=1) as client:
    assert "dask" not in sys.modules, "Client() imported dask"
    import dask
    where = dask.delayed(lambda: get_worker().address)().compute()
    assert where in client.scheduler_info()["workers"], where
    assert dask.config.get("scheduler") == client.get
assert dask.config.get("scheduler", None) is None
print("ok")
"""
    done = run_python(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_a_closed_client_never_becomes_the_scheduler_of_a_later_dask_import():
    code = """
from trioflow import Client
with Client(processes=False, n_workers=1, threads_per_worker=1):
    pass
import dask
assert dask.config.get("scheduler", None) is None
print("ok")
"""
    done = run_python(code)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr


def test_dask_collections_on_every_face(face):
    import dask

    async def scenario(c):
        workers = set(await face(c.nthreads()))
        computed = c.compute(dask.delayed(where_am_i)())
        assert isinstance(computed, Future)
        assert await face.result(computed) in workers
        persisted = c.persist(dask.delayed(inc)(1))
        (future,) = persisted.__dask_graph__().values()
        assert isinstance(future, Future) and await face.result(future) == 2
        assert await face(c.get({"x": (inc, 1), "y": (double, "x")}, "y")) == 4
    face.run(scenario)
