"""Every collection that ``client.persist``/``client.compute`` hands back
computes to exactly what dask computes without a cluster (dask's own
"sync" scheduler), for delayed, bag, array and dataframe."""

import pytest

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
dd = pytest.importorskip("dask.dataframe")
np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")

from trioflow import Client  # noqa: E402


def local(collection):
    (value,) = dask.compute(collection, scheduler="sync")
    return value


def assert_same(a, b):
    if isinstance(a, (pd.DataFrame, pd.Series)):
        pd.testing.assert_frame_equal(pd.DataFrame(a), pd.DataFrame(b))
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def negatives(xs):
    return [x for x in xs if x < 0]


def frame():
    return dd.from_pandas(pd.DataFrame({"b": [-1, -2, -3, -4, -5, 6]}), npartitions=2)


# each: (the collection, what is computed from it after persisting: a filter, a reduction)
CASES = {
    "delayed": (lambda: dask.delayed(list)(range(-5, 5)),
                lambda d: dask.delayed(negatives)(d), lambda d: dask.delayed(sum)(d)),
    "bag": (lambda: db.from_sequence(range(-5, 7), npartitions=3),
            lambda b: b.filter(lambda x: x < 0), lambda b: b.sum()),
    "array": (lambda: da.arange(-5, 7, chunks=4),
              lambda x: x[x < 0], lambda x: x.sum()),
    "dataframe": (frame, lambda df: df[df.b < 0], lambda df: df.b.sum()),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_persisted_collection_computes_what_dask_computes(inproc_client, kind):
    make, select, reduce = CASES[kind]
    original = make()
    persisted = inproc_client.persist(original)
    assert_same(persisted.compute(), local(original))
    assert_same(select(persisted).compute(), local(select(original)))
    assert_same(reduce(persisted).compute(), local(reduce(original)))
    (through_dask,) = dask.persist(select(original))  # dask hands this to client.persist
    assert_same(reduce(through_dask).compute(), local(reduce(select(original))))
    # a filtered collection persisted, then reduced (issue 12's dataframe case)
    chosen = inproc_client.persist(select(original))
    assert_same(chosen.compute(), local(select(original)))
    assert_same(inproc_client.compute(reduce(chosen)).result(timeout=10),
                local(reduce(select(original))))


def test_persisted_filtered_dataframe_keeps_only_the_chosen_rows(inproc_client):
    df = frame()
    persisted = inproc_client.persist(df[df.b < 0])
    assert persisted.compute().b.tolist() == [-1, -2, -3, -4, -5]
    assert persisted.b.sum().compute() == -15


def test_compute_dataframe_reductions(inproc_client):
    df = dd.from_pandas(pd.DataFrame({"x": range(10), "g": [0, 1] * 5}), npartitions=3)
    total = inproc_client.compute(df.x.sum())
    assert total.result(timeout=10) == 45
    reductions = [df.x.mean(), df.x.count(), df.groupby("g").x.sum(), df.x.max(),
                  df.describe()]
    values = inproc_client.compute(reductions, sync=True)
    for value, expected in zip(values, dask.compute(*reductions, scheduler="sync")):
        assert_same(value, expected)
    assert_same(inproc_client.compute(df[df.x > 6], sync=True), local(df[df.x > 6]))


def test_compute_several_kinds_at_once_keeps_their_order(inproc_client):
    df = frame()
    items = [df.b.sum(), da.arange(4, chunks=2).sum(), 7, db.from_sequence([1, 2]).sum(),
             dask.delayed(sum)([1, 2, 3])]
    assert inproc_client.compute(items, sync=True) == [-9, 6, 7, 3, 6]


def test_published_persisted_dataframe_read_from_a_second_client(inproc_client):
    df = frame()
    persisted = inproc_client.persist(df[df.b < 0])
    inproc_client.publish_dataset(negatives=persisted)
    with Client(inproc_client.scheduler_address, set_as_default=False) as other:
        shared = other.get_dataset("negatives")
        assert other.compute(shared, sync=True).b.tolist() == [-1, -2, -3, -4, -5]
        assert other.compute(shared.b.sum(), sync=True) == -15
        assert other.compute(shared[shared.b < -2].b.sum(), sync=True) == -12


def test_a_dataframe_computed_and_persisted_on_every_face(face):
    df = frame()

    async def scenario(client):
        assert await face.result(client.compute(df.b.sum())) == -9
        persisted = client.persist(df[df.b < 0])
        assert await face.result(client.compute(persisted.b.sum())) == -15
    face.run(scenario, n_workers=1, threads_per_worker=1, set_as_default=False)
