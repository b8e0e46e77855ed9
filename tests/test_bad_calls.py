"""A bad call never breaks the client (issue 12, point 7).

Every argument a user passes ends in a result or in a clear error for that
call alone; the client's loop, its connection and its other futures carry
on.  ``workers=`` takes every form dask.distributed takes, and the mapping
form of distributed's locality docs for compute/persist/get.
"""

import dask
import pytest
import trio

from trioflow import Client
from trioflow.errors import TrioflowError
from _util import async_client


def inc(x):
    return x + 1


def add(x, y):
    return x + y


BAD_SUBMITS = [
    (dict(workers=object()), "workers="),
    (dict(workers={"a": 1}), "mapping"),
    (dict(workers=[1.5j]), "workers="),
    (dict(resources=["GPU"]), "resources="),
    (dict(resources={"GPU": "one"}), "resources="),
    (dict(retries="3"), "retries="),
    (dict(priority="high"), "priority="),
    (dict(allow_other_workers="yes", workers=["x"]), "allow_other_workers="),
    (dict(timeout="soon"), "timeout="),
    (dict(key=object()), "key"),
]


def _bad_calls_raise_and_the_client_goes_on(client):
    for kwargs, named in BAD_SUBMITS:
        with pytest.raises((TypeError, ValueError), match=named):
            client.submit(inc, 1, **kwargs)
    with pytest.raises(TypeError, match="workers="):
        client.map(inc, [1, 2], workers=object())
    with pytest.raises(TypeError, match="workers="):
        client.scatter([1], workers=object())
    with pytest.raises(TypeError, match="workers="):
        client.has_what(workers=[object()])
    with pytest.raises(TypeError, match="cannot be sent"):
        client.story(object())


def _check_locality(client):
    """``workers={collection: address}`` (distributed's locality docs), twice:
    the second call reuses the key computed by the first."""
    addresses = sorted(client.scheduler_info()["workers"])
    z = dask.delayed(inc)(41)
    for _ in range(2):
        future = client.compute(z, workers={z: addresses[-1]})
        assert future.result(timeout=20) == 42
        assert list(client.who_has(future)[future.key]) == [addresses[-1]]
    x = dask.delayed(inc)(1, dask_key_name="loc-x")
    y = dask.delayed(add)(x, 10, dask_key_name="loc-y")
    x2, y2 = client.persist([x, y], workers={x: addresses[0], y: addresses[-1]})
    assert client.compute(y2).result(timeout=20) == 12
    assert addresses[0] in client.who_has()["loc-x"]
    assert list(client.who_has()["loc-y"]) == [addresses[-1]]
    # the forms dask takes: an address, a name, a host, a list, tuple or set
    name = client.scheduler_info()["workers"][addresses[0]]["name"]
    for spec in (addresses[0], name, [addresses[0]], (addresses[0],), {addresses[0]}):
        assert client.submit(inc, 1, workers=spec, pure=False).result(timeout=20) == 2
    with pytest.raises(ValueError, match="not part of what is computed"):
        client.compute(z, workers={dask.delayed(inc)(0): addresses[0]})


def test_bad_calls_fail_alone_with_worker_processes(proc_client):
    client = proc_client
    _check_locality(client)
    _bad_calls_raise_and_the_client_goes_on(client)
    _check_locality(client)
    assert client.submit(add, 1, 2).result(timeout=20) == 3


def test_bad_calls_fail_alone_in_process(inproc_client):
    _check_locality(inproc_client)
    _bad_calls_raise_and_the_client_goes_on(inproc_client)
    assert inproc_client.submit(add, 1, 2).result(timeout=20) == 3


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio", "asyncio"])
async def test_bad_calls_fail_alone_on_the_async_client(anyio_backend):
    async with async_client(n_workers=2, threads_per_worker=1) as client:
        addresses = sorted((await client.scheduler_info())["workers"])
        z = dask.delayed(inc)(1)
        for _ in range(2):
            future = client.compute(z, workers={z: addresses[1]})
            assert await future == 2
            assert list((await client.who_has(future))[future.key]) == [addresses[1]]
        for kwargs, named in BAD_SUBMITS:
            with pytest.raises((TypeError, ValueError), match=named):
                client.submit(inc, 1, **kwargs)
        with pytest.raises(TypeError, match="cannot be sent"):
            await client.story(object())
        assert await client.submit(add, 1, 2) == 3


@pytest.mark.anyio
async def test_an_unencodable_request_fails_alone_and_the_connection_goes_on():
    """Below the checks: a request msgpack cannot encode, on a websocket
    connection, fails in its caller only; messages sent with it still go."""
    from trioflow import Scheduler
    async with Scheduler(address="ws://127.0.0.1:0") as scheduler:
        async with Client(scheduler.address, asynchronous=True) as client:
            connection = client._core.scheduler
            async with trio.open_nursery() as nursery:
                results = {}

                async def ask(name, msg):
                    try:
                        results[name] = await connection.request(msg)
                    except TypeError as exc:
                        results[name] = exc

                nursery.start_soon(ask, "bad", {"op": "identity", "junk": object()})
                nursery.start_soon(ask, "good", {"op": "identity"})
            assert isinstance(results["bad"], TypeError)
            assert "cannot encode" in str(results["bad"])
            assert results["good"]["type"] == "Scheduler"
            assert not connection.closed
            assert (await client.scheduler_info())["address"] == scheduler.address


@pytest.fixture
def anyio_backend():
    return "trio"


def test_a_closed_client_says_so():
    client = Client(processes=False, n_workers=1, dashboard_address=None)
    client.close()
    with pytest.raises(TrioflowError, match="not running"):
        client.submit(inc, 1).result()
