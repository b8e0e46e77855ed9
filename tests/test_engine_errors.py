"""Task errors, unpicklable input and output, and that the cluster survives them."""

import threading
import traceback

import pytest

from trioflow import Client
from _tasks import divide, identity, inc, make_lock
from _util import scheduler_address


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


def test_task_error_type_and_message_are_preserved(inproc_client):
    future = inproc_client.submit(inc, "text")
    with pytest.raises(TypeError) as info:
        future.result(timeout=10)
    assert str(info.value) == _local_message(inc, "text")


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


# --- processes=True -----------------------------------------------------------------


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
