"""The worker's execution on its own (server/execution.py), without a worker
or a scheduler: sync and async runs, errors, deadlines, cancellation."""
from __future__ import annotations

import threading

import pytest
import trio

from trioflow import checkpoint
from trioflow.server.execution import Executor
from trioflow.server.threads import TaskThreads

pytestmark = pytest.mark.anyio


def _add(a, b):
    return a + b


async def _add_async(a, b):
    await trio.sleep(0)
    return a + b


def _fail(text):
    raise ValueError(text)


def _spin_until_cancelled(started: threading.Event):
    started.set()
    while True:
        checkpoint()
        threading.Event().wait(0.001)


async def _forever():
    await trio.sleep_forever()


async def _run(executor, nursery, key, func, *args, is_async=False, deadline=None):
    return await executor.run(nursery, key, func, args, {}, is_async, deadline)


@pytest.fixture
def executor():
    threads = TaskThreads("test-execution")
    try:
        yield Executor(None, threads)
    finally:
        threads.shutdown()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_sync_and_async_runs_give_their_values_and_errors(anyio_backend, executor):
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            status, value, duration, execution = await _run(executor, nursery, "a", _add, 1, 2)
            assert (status, value, execution.is_async) == ("ok", 3, False)
            assert execution.thread_id not in (None, threading.get_ident()) and duration >= 0
            assert (await _run(executor, nursery, "b", _add_async, 1, 2, is_async=True))[:2] \
                == ("ok", 3)
            status, error, _, _ = await _run(executor, nursery, "c", _fail, "boom")
            assert status == "error" and isinstance(error, ValueError) and str(error) == "boom"
        assert executor.executing == {}


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_a_deadline_stops_a_run_and_says_it_timed_out(anyio_backend, executor):
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            status, error, _, execution = await _run(executor, nursery, "slow", _forever,
                                                     is_async=True, deadline=0.05)
            # the worker's state turns it into the task's TimeoutError
            assert (status, error) == ("timed-out", None) and execution.timed_out


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_cancel_stops_async_runs_at_once_and_sync_ones_at_a_checkpoint(anyio_backend,
                                                                             executor):
    outcomes = {}
    started = threading.Event()

    async def run(key, func, *args):
        is_async = func is _forever
        outcomes[key] = (await _run(executor, nursery, key, func, *args, is_async=is_async))[0]

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "async", _forever)
            nursery.start_soon(run, "sync", _spin_until_cancelled, started)
            while not (started.is_set() and len(executor.executing) == 2):
                await trio.sleep(0.01)
            assert sorted(executor.call_stacks()) == ["async", "sync"]
            executor.cancel_all()
    assert outcomes == {"async": "cancelled", "sync": "cancelled"}
    assert executor.sync_running() == []
