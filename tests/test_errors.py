"""Errors: a task's exception with its remote traceback (exception(),
traceback(), result()), dependents erring alike, unpicklable functions,
arguments and results, retries and retry(), gather(errors="skip"), and bad
calls that fail alone while the client goes on."""

import pathlib
import threading
import traceback
import types

import dask
import pytest
import trio

import trioflow
from trioflow import Client
from trioflow.errors import TrioflowError
from _tasks import (
    add,
    divide,
    flaky_inc,
    identity,
    inc,
    load_setting,
    make_lock,
)
from _util import async_client, scheduler_address


@pytest.fixture
def anyio_backend():
    return "trio"


# --- a task's exception and traceback ------------------------------------------------------


def test_exception_traceback_and_result_of_a_failed_task(face):
    async def scenario(c):
        failing = c.submit(load_setting, "not a number")
        error = await face(failing.exception())
        assert isinstance(error, ValueError)
        tb = await face(failing.traceback(timeout=10))
        assert isinstance(tb, types.TracebackType)
        frames = traceback.format_tb(tb)
        assert "load_setting" in "".join(frames) and "_parse_setting" in frames[-1]
        with pytest.raises(ValueError) as info:
            await face.result(failing)
        assert "_parse_setting" in "".join(traceback.format_tb(info.value.__traceback__))
        with pytest.raises(ValueError):
            await face(c.gather([failing]))
        finishing = c.submit(inc, 1)
        assert await face(finishing.exception()) is None
        assert await face(finishing.traceback()) is None
    face.run(scenario)


def test_exception_returns_the_task_exception_and_none_when_it_finished(face):
    async def scenario(c):
        failing = c.submit(load_setting, "not a number")
        finishing = c.submit(load_setting, "12")
        error = await face(failing.exception(timeout=10))
        assert isinstance(error, ValueError)
        assert "not a number" in str(error)
        assert failing.status == "error"
        assert await face(finishing.exception(timeout=10)) is None
        assert await face(finishing.traceback(timeout=10)) is None
        assert await face(finishing.result()) == 12
    face.run(scenario)


def test_traceback_is_a_traceback_object_with_the_task_frames(face):
    async def scenario(c):
        failing = c.submit(load_setting, "x")
        tb = await face(failing.traceback(timeout=10))
        assert isinstance(tb, types.TracebackType)
        frames = traceback.format_tb(tb)
        text = "".join(frames)
        assert "load_setting" in text and "_parse_setting" in text
        # the innermost frame is where the error was raised
        assert "_parse_setting" in frames[-1]
        names = [frame.name for frame in traceback.extract_tb(tb)]
        assert names.index("load_setting") < names.index("_parse_setting")
    face.run(scenario)


def test_result_reraises_the_exception_with_its_remote_traceback(face):
    async def scenario(c):
        failing = c.submit(load_setting, "x")
        with pytest.raises(ValueError, match="invalid literal") as info:
            await face(failing.result(timeout=10))
        assert "_parse_setting" in "".join(traceback.format_tb(info.value.__traceback__))
    face.run(scenario)


def test_exception_and_traceback_time_out(face, tmp_path):
    release = tmp_path / "release"

    async def scenario(c):
        async with face.held_task(c, release) as blocked:
            with pytest.raises(trioflow.TimeoutError):
                await face(blocked.exception(timeout=0.1))
            with pytest.raises(trioflow.TimeoutError):
                await face(blocked.traceback(timeout=0.1))
        assert await face(blocked.exception(timeout=10)) is None
    face.run(scenario)


def _local_message(func, *args):
    try:
        func(*args)
    except Exception as exc:  # noqa: BLE001 - we only want the message
        return str(exc)
    raise AssertionError("expected the local call to fail")


def _assert_cluster_still_works(client, timeout=30):
    assert client.submit(inc, 1, pure=False).result(timeout=timeout) == 2
    assert client.gather(client.map(inc, range(4), pure=False)) == [1, 2, 3, 4]
    with Client(scheduler_address(client)) as other:
        assert other.submit(inc, 10, pure=False).result(timeout=timeout) == 11


def _assert_remote_traceback(exc, function_name):
    frames = "".join(traceback.format_tb(exc.__traceback__))
    assert function_name in frames, frames


def test_task_error_raises_original_exception_with_remote_traceback(inproc_client):
    future = inproc_client.submit(divide, 1, 0)
    with pytest.raises(ZeroDivisionError) as info:
        future.result(timeout=10)
    assert str(info.value) == _local_message(divide, 1, 0)
    _assert_remote_traceback(info.value, "divide")
    assert future.status == "error"
    assert isinstance(future.exception(timeout=10), ZeroDivisionError)
    assert "divide" in "".join(traceback.format_tb(future.traceback(timeout=10)))
    _assert_cluster_still_works(inproc_client)


def test_dependent_task_errs_with_same_exception(inproc_client):
    failing = inproc_client.submit(divide, 1, 0)
    dependent = inproc_client.submit(inc, failing)
    downstream = inproc_client.submit(inc, dependent)
    for future in (dependent, downstream):
        with pytest.raises(ZeroDivisionError) as info:
            future.result(timeout=10)
        assert str(info.value) == _local_message(divide, 1, 0)
        _assert_remote_traceback(info.value, "divide")
        assert future.status == "error"
    with pytest.raises(ZeroDivisionError):
        inproc_client.gather([inproc_client.submit(inc, 1), dependent])
    _assert_cluster_still_works(inproc_client)


def test_task_error_type_and_message_are_preserved(face):
    async def scenario(c):
        future = c.submit(inc, "text")
        with pytest.raises(TypeError) as info:
            await face(future.result(timeout=10))
        assert str(info.value) == _local_message(inc, "text")
    face.run(scenario)


def test_future_status_error(face):
    async def scenario(c):
        future = c.submit(inc, "x")
        await face.until(future.done, message="erred future done")
        assert future.status == "error"
        assert isinstance(await face(future.exception(timeout=10)), TypeError)
    face.run(scenario)


@pytest.mark.timeout(120)
def test_processes_task_error_keeps_message_and_remote_traceback(proc_client):
    failing = proc_client.submit(divide, 1, 0)
    dependent = proc_client.submit(inc, failing)
    for future in (failing, dependent):
        with pytest.raises(ZeroDivisionError) as info:
            future.result(timeout=30)
        assert str(info.value) == _local_message(divide, 1, 0)
        _assert_remote_traceback(info.value, "divide")
    _assert_cluster_still_works(proc_client)


# --- what cannot be pickled ----------------------------------------------------------------


def test_unpicklable_function_fails_at_submit(inproc_client):
    lock = threading.Lock()

    def guarded_inc(x):
        with lock:
            return x + 1

    with pytest.raises(Exception) as info:
        inproc_client.submit(guarded_inc, 1)
    assert "lock" in str(info.value).lower(), str(info.value)
    with pytest.raises(Exception) as info:
        inproc_client.submit(lambda x: (lock, x)[1], 1)
    assert "lock" in str(info.value).lower(), str(info.value)
    _assert_cluster_still_works(inproc_client)


def test_unpicklable_argument_fails_at_submit(inproc_client):
    with pytest.raises(Exception) as info:
        inproc_client.submit(identity, threading.Lock())
    assert "lock" in str(info.value).lower(), str(info.value)
    with pytest.raises(Exception) as info:
        inproc_client.map(identity, [1, threading.Lock()])
    assert "lock" in str(info.value).lower(), str(info.value)
    _assert_cluster_still_works(inproc_client)


@pytest.mark.timeout(120)
def test_processes_unpicklable_input_and_result_give_clear_errors(proc_client):
    lock = threading.Lock()

    def guarded_inc(x):
        with lock:
            return x + 1

    with pytest.raises(Exception) as info:
        proc_client.submit(guarded_inc, 1)
    assert "lock" in str(info.value).lower(), str(info.value)

    with pytest.raises(Exception) as info:
        proc_client.submit(identity, threading.Lock())
    assert "lock" in str(info.value).lower(), str(info.value)

    # The lock is made on a worker; it fails only when it has to travel.
    unpicklable = proc_client.submit(make_lock, pure=False)
    with pytest.raises(Exception) as info:
        unpicklable.result(timeout=30)
    assert "lock" in str(info.value).lower(), repr(info.value)
    _assert_cluster_still_works(proc_client)


def _refuse_to_load():
    raise RuntimeError("this value cannot be loaded here")


class _LoadsNowhere:
    """Pickles, but unpickling it raises: a value only the process that made it can hold."""

    def __reduce__(self):
        return (_refuse_to_load, ())


def _loads_nowhere():
    return _LoadsNowhere()


def test_a_value_that_cannot_be_unpickled_where_it_goes_errs_and_the_workers_live():
    with Client(processes=False, protocol="ws", n_workers=2, threads_per_worker=1,
                dashboard_address=None) as client:
        maker, user = sorted(client.nthreads())
        made = client.submit(_loads_nowhere, workers=[maker])
        trioflow.wait([made], timeout=10)
        # the dependency travels to the other worker, which cannot load it
        dependent = client.submit(identity, made, workers=[user], allow_other_workers=False)
        with pytest.raises(trioflow.SerializationError,
                           match=f"cannot unpickle .*_loads_nowhere.* on worker {user}"):
            dependent.result(timeout=10)
        with pytest.raises(trioflow.SerializationError, match="this value cannot be loaded"):
            client.scatter(_LoadsNowhere(), workers=[user])
        assert sorted(client.nthreads()) == [maker, user]
        assert client.run(lambda dask_worker: len(dask_worker.data), workers=[user]) == {user: 0}
        _assert_cluster_still_works(client)


# --- retries and retry ---------------------------------------------------------------------


def test_retries_and_retry(face, tmp_path):
    async def scenario(c):
        retried = c.submit(flaky_inc, str(tmp_path / "a"), 2, 1, retries=2)
        assert await face.result(retried) == 2

        failing = c.submit(flaky_inc, str(tmp_path / "b"), 1, 2)
        assert isinstance(await face(failing.exception()), RuntimeError)
        await face(c.retry([failing]))
        assert await face.result(failing) == 3

        again = c.submit(flaky_inc, str(tmp_path / "c"), 1, 3)
        dependent = c.submit(inc, again)
        with pytest.raises(RuntimeError):
            await face.result(dependent)
        await face(again.retry())
        assert await face.result(again) == 4
        assert await face.result(dependent) == 5
    face.run(scenario)


def test_retries_exhausted_raises_last_error(face, tmp_path):
    counter = tmp_path / "attempts"

    async def scenario(c):
        future = c.submit(flaky_inc, str(counter), 2, 10, retries=1)
        with pytest.raises(RuntimeError, match="attempt 2"):
            await face(future.result(timeout=10))
        assert counter.read_text() == "2"
    face.run(scenario)


def test_retries_rerun_a_failing_task_until_it_succeeds(face, tmp_path):
    counter = tmp_path / "attempts"

    async def scenario(c):
        future = c.submit(flaky_inc, str(counter), 2, 10, retries=2)
        assert await face(future.result(timeout=10)) == 11
        assert counter.read_text() == "3"
    face.run(scenario)


def test_retries_apply_to_each_task_of_map(face, tmp_path):
    counters = [str(tmp_path / f"attempts-{i}") for i in range(3)]

    async def scenario(c):
        futures = c.map(flaky_inc, counters, [1] * 3, range(3), retries=1)
        assert await face(c.gather(futures)) == [1, 2, 3]
        assert all(pathlib.Path(c).read_text() == "2" for c in counters)
    face.run(scenario)


def test_too_few_retries_raise_the_last_error(face, tmp_path):
    counter = tmp_path / "attempts"

    async def scenario(c):
        future = c.submit(flaky_inc, str(counter), 3, 0, retries=1)
        with pytest.raises(RuntimeError, match="attempt 2"):
            await face(future.result(timeout=10))
    face.run(scenario)


def test_client_retry_reruns_an_erred_future(face, tmp_path):
    counter = tmp_path / "attempts"

    async def scenario(c):
        future = c.submit(flaky_inc, str(counter), 1, 1)
        assert isinstance(await face(future.exception(timeout=10)), RuntimeError)
        await face(c.retry([future]))
        assert await face(future.result(timeout=10)) == 2
        assert future.status == "finished"
    face.run(scenario)


def test_future_retry_reruns_it(face, tmp_path):
    counter = tmp_path / "attempts"

    async def scenario(c):
        future = c.submit(flaky_inc, str(counter), 1, 5)
        with pytest.raises(RuntimeError):
            await face(future.result(timeout=10))
        await face(future.retry())
        assert await face(future.result(timeout=10)) == 6
    face.run(scenario)


def test_retry_of_a_dependent_reruns_the_failed_dependency(face, tmp_path):
    counter = tmp_path / "attempts"

    async def scenario(c):
        root = c.submit(flaky_inc, str(counter), 1, 1)
        dependent = c.submit(inc, root)
        with pytest.raises(RuntimeError):
            await face(dependent.result(timeout=10))
        await face(c.retry([dependent]))
        assert await face(dependent.result(timeout=10)) == 3
        assert await face(root.result(timeout=10)) == 2
    face.run(scenario)


# --- gather(errors="skip") -----------------------------------------------------------------


def test_gather_errors_skip(face):
    async def scenario(c):
        good = c.map(inc, range(2))
        bad = c.submit(divide, 1, 0)
        assert await face(c.gather([good[0], bad, good[1]], errors="skip")) == [1, 2]
        with pytest.raises(ZeroDivisionError):
            await face(c.gather([good[0], bad]))
    face.run(scenario)


def test_gather_errors_skip_drops_failed(face):
    async def scenario(c):
        good = c.submit(inc, 1)
        bad = c.submit(inc, "not a number")
        assert await face(c.gather([good, bad], errors="skip")) == [2]
        with pytest.raises(TypeError):
            await face(c.gather([good, bad]))
    face.run(scenario)


def test_gather_errors_skip_leaves_out_erred_futures(face):
    async def scenario(c):
        good = c.map(inc, range(3))
        bad = c.submit(divide, 1, 0)
        assert await face(c.gather([good[0], bad, good[1], good[2]], errors="skip")) == [
            1, 2, 3]
        assert await face(c.gather({"a": good[0], "b": bad}, errors="skip")) == {"a": 1}
        with pytest.raises(ZeroDivisionError):
            await face(c.gather([good[0], bad], errors="raise"))
        with pytest.raises(ValueError):
            await face(c.gather(good, errors="ignore"))
    face.run(scenario)


# --- a bad call fails alone (issue 12, point 7) --------------------------------------------


# Every argument a user passes ends in a result or in a clear error for that
# call alone; the client's loop, its connection and its other futures carry
# on.  ``workers=`` takes every form dask.distributed takes, and the mapping
# form of distributed's locality docs for compute/persist/get.


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


def test_a_closed_client_says_so():
    client = Client(processes=False, n_workers=1, dashboard_address=None)
    client.close()
    with pytest.raises(TrioflowError, match="not running"):
        client.submit(inc, 1).result()
