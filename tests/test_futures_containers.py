"""Every call that takes futures takes them as dask's do: one future, nested
lists, tuples, sets and dicts, iterators and generators, a persisted
collection; ``gather`` and ``scatter`` give back the shape they were given."""

import collections
import gc

import pytest

from trioflow import (
    Future, as_completed, fire_and_forget, futures_of, wait)
from _tasks import append_line, wait_for_path
from _util import async_client, barrier, wait_until

Pair = collections.namedtuple("Pair", "left right")


def dask_array():
    return pytest.importorskip("dask.array")


def inc(x):
    return x + 1


def total(nested):
    """The sum of every number in a nesting of lists, tuples, sets and dicts."""
    stack, found = [nested], 0
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set)):
            stack.extend(item)
        else:
            found += item
    return found


def fail(x):
    raise ValueError(f"bad {x}")


def append_after(path, text, gate):
    return append_line(path, text)


# --- gather -------------------------------------------------------------------


def test_gather_of_an_iterator_gives_the_results_in_order(inproc_client):
    futures = inproc_client.map(inc, range(5))
    gathered = inproc_client.gather(iter(futures))
    assert not isinstance(gathered, list)  # an iterator, read as it goes (as dask)
    assert list(gathered) == [1, 2, 3, 4, 5]
    assert list(inproc_client.gather(f for f in futures[:2])) == [1, 2]
    items = iter([futures[0], [futures[1], futures[2]], {"k": futures[3]}])
    assert list(inproc_client.gather(items)) == [1, [2, 3], {"k": 4}]


def test_gather_keeps_nested_shapes(inproc_client):
    a, b, c, d = inproc_client.map(inc, range(4))
    nested = {"list": [a, (b, {c}), {"deep": [[d]]}], "tuple": (a,), "set": {b, c},
              "frozen": frozenset([d]), "pair": Pair(a, [b]), "plain": 7}
    assert inproc_client.gather(nested) == {
        "list": [1, (2, {3}), {"deep": [[4]]}], "tuple": (1,), "set": {2, 3},
        "frozen": frozenset([4]), "pair": Pair(1, [2]), "plain": 7}
    assert inproc_client.gather({a, b}) == {1, 2}
    assert inproc_client.gather([iter([a, b]), (f for f in [c])]) == [[1, 2], [3]]


def test_gather_of_an_iterator_skips_erred_futures_when_asked(inproc_client):
    good = inproc_client.submit(inc, 1)
    bad = inproc_client.submit(fail, 1)
    wait([good, bad], timeout=10)
    assert list(inproc_client.gather(iter([good, bad, good]), errors="skip")) == [2, 2]
    gathered = inproc_client.gather(iter([good, bad]))
    assert next(gathered) == 2
    with pytest.raises(ValueError, match="bad 1"):
        next(gathered)
    assert inproc_client.gather({"a": [good, bad]}, errors="skip") == {"a": [2]}


# --- waiting ------------------------------------------------------------------


def test_wait_and_as_completed_take_any_container(inproc_client):
    futures = inproc_client.map(inc, range(6))
    done, not_done = wait(iter(futures[:2]), timeout=10)
    assert done == set(futures[:2]) and not not_done
    done, _ = wait({"a": [futures[2], (futures[3],)], "b": {futures[4]}}, timeout=10)
    assert done == set(futures[2:5])
    assert wait(f for f in futures[5:]).done == {futures[5]}
    assert set(as_completed(iter(futures))) == set(futures)
    assert set(as_completed(set(futures))) == set(futures)
    assert set(as_completed(f for f in futures)) == set(futures)
    with pytest.raises(TypeError, match="as_completed tracks futures"):
        as_completed([futures[:2]])


def test_futures_of_finds_futures_everywhere_once(inproc_client):
    da = dask_array()
    a, b = inproc_client.map(inc, range(2))
    assert futures_of({"x": [a, (b, a)], "y": iter([b])}) == [a, b]
    assert inproc_client.futures_of(a) == [a]
    persisted = inproc_client.persist(da.ones(4, chunks=2))
    found = futures_of([persisted])
    assert len(found) == 2 and all(isinstance(f, Future) for f in found)
    assert wait(persisted, timeout=10).done == set(found)


# --- acting on futures --------------------------------------------------------


def test_cancel_retry_and_who_has_take_iterators_and_nesting(inproc_client):
    futures = inproc_client.map(inc, range(4))
    wait(futures, timeout=10)
    assert set(inproc_client.who_has(iter(futures))) == {f.key for f in futures}
    assert set(inproc_client.who_has({"a": [futures[0]]})) == {futures[0].key}
    inproc_client.cancel(f for f in futures[:2])
    inproc_client.cancel({"x": (futures[2],), "y": {futures[3]}})
    assert all(f.cancelled() for f in futures)
    bad = inproc_client.submit(fail, 2)
    wait(bad, timeout=10)
    inproc_client.retry(iter([bad]))
    wait_until(lambda: bad.status == "error", message="retried task erred again")
    # a persisted collection stands for its futures, as in dask
    persisted = inproc_client.persist(dask_array().ones(4, chunks=2))
    chunks = futures_of(persisted)
    wait(persisted, timeout=10)
    assert set(inproc_client.who_has(persisted)) == {f.key for f in chunks}
    inproc_client.cancel(persisted)
    assert all(f.cancelled() for f in chunks)


def test_replicate_and_rebalance_take_iterators_and_nesting(inproc_client):
    a, b = inproc_client.scatter([1, 2])
    inproc_client.replicate(iter([a]))
    inproc_client.replicate({"b": [b]})
    who_has = inproc_client.who_has([a, b])
    assert len(who_has[a.key]) == len(who_has[b.key]) == 2
    inproc_client.rebalance(f for f in [a, b])
    inproc_client.rebalance({"both": (a, b)})
    assert inproc_client.gather([a, b]) == [1, 2]
    persisted = inproc_client.persist(dask_array().arange(4, chunks=2))
    inproc_client.replicate(persisted)
    assert all(len(holders) == 2 for holders in inproc_client.who_has(persisted).values())
    inproc_client.rebalance(persisted)


def test_fire_and_forget_takes_iterators_and_nesting(inproc_client, tmp_path):
    release, out = tmp_path / "release", tmp_path / "out"
    try:
        gate = inproc_client.submit(wait_for_path, str(release))
        lines = [inproc_client.submit(append_after, str(out), word, gate)
                 for word in ("one", "two", "three")]
        fire_and_forget(iter(lines[:1]))
        fire_and_forget({"rest": [lines[1], (f for f in lines[2:])]})
        del gate, lines
        gc.collect()
        barrier(inproc_client)  # the releases have reached the scheduler
    finally:
        release.touch()
    wait_until(lambda: out.exists() and len(out.read_text().split()) == 3,
               message="every fired-and-forgotten task ran")


# --- submitting ---------------------------------------------------------------


def test_submit_and_map_find_futures_in_nested_arguments(inproc_client):
    a, b, c, d = inproc_client.map(inc, range(4))  # 1, 2, 3, 4
    nested = inproc_client.submit(total, [a, (b, {"k": c}), {d}])
    assert nested.result(timeout=10) == 10
    assert inproc_client.submit(total, {"deep": [[[(a,)]]]}).result(timeout=10) == 1
    mapped = inproc_client.map(inc, (f for f in [a, b]))
    assert inproc_client.gather(mapped) == [2, 3]
    assert inproc_client.gather(inproc_client.map(total, iter([[a, b], (c, d)]))) == [3, 7]


def test_compute_and_persist_take_iterators_and_sets(inproc_client):
    dask = pytest.importorskip("dask")
    x, y = dask.delayed(inc)(1), dask.delayed(inc)(2)
    (one,) = inproc_client.compute([iter([x, y])])
    assert one.result(timeout=10) == [2, 3]
    assert sorted(inproc_client.compute({x, y}, sync=True)) == [2, 3]
    assert inproc_client.compute((x, [y]), sync=True) == [2, [3]]
    px, py = inproc_client.persist((x, y))
    assert (px.compute(), py.compute()) == (2, 3)


# --- scatter ------------------------------------------------------------------


def test_scatter_keeps_the_shape_of_its_input(inproc_client):
    from_iter = inproc_client.scatter(iter([1, 2]))
    assert not isinstance(from_iter, list)
    assert inproc_client.gather(list(from_iter)) == [1, 2]
    as_set = inproc_client.scatter({1, 2})
    assert isinstance(as_set, set) and inproc_client.gather(as_set) == {1, 2}
    frozen = inproc_client.scatter(frozenset([3]))
    assert isinstance(frozen, frozenset) and inproc_client.gather(frozen) == frozenset([3])
    assert inproc_client.gather(inproc_client.scatter(range(3))) == [0, 1, 2]
    pair = inproc_client.scatter(Pair(1, 2))
    assert isinstance(pair, Pair) and inproc_client.gather(pair) == Pair(1, 2)
    assert inproc_client.gather(inproc_client.scatter({"a": 1, "b": [2]})) == {"a": 1, "b": [2]}
    counts = inproc_client.scatter(collections.Counter("aab"))  # a subclass: one object
    assert isinstance(counts, Future) and counts.result(timeout=10) == {"a": 2, "b": 1}


# --- the asynchronous face ----------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_async_client_takes_iterators_and_nesting(anyio_backend):
    async with async_client(n_workers=1, threads_per_worker=1) as client:
        futures = client.map(inc, range(4))
        # an iterator gathers item by item, as dask's: an awaitable per item
        assert [await each for each in client.gather(iter(futures))] == [1, 2, 3, 4]
        assert await client.gather({"a": [futures[0], {futures[1]}]}) == {"a": [1, {2}]}
        assert await client.gather([iter(futures[:2])]) == [[1, 2]]
        done, _ = await wait(iter(futures))
        assert done == set(futures)
        assert [f async for f in as_completed(f for f in futures)]
        assert set(await client.who_has({"x": iter(futures)})) == {f.key for f in futures}
        scattered = await client.scatter({5, 6})
        assert isinstance(scattered, set) and await client.gather(scattered) == {5, 6}
        assert await client.submit(total, [futures[0], {"k": (futures[1],)}]) == 3
        await client.replicate(iter(futures[:1]))
        await client.cancel(f for f in futures)
        assert all(f.cancelled() for f in futures)
