"""A client whose scheduler is gone says so (issue 13, point 5).

Once the connection is lost, ``client.status`` is not "running", its
pending futures err with the connection error, and every new call raises
CommClosedError at once instead of waiting for a timeout; from a blocking
client, and from asynchronous ones under trio and under asyncio.  The
scheduler is a ``trioflow scheduler`` process, killed with SIGKILL.
"""

import asyncio
import contextlib

import pytest
import trio

from trioflow import Client, CommClosedError
from _tasks import inc, slow_inc
from _util import cli_scheduler, wait_until

pytestmark = pytest.mark.timeout(90)

#: far longer than a test may take: a call that waited for it would time the test out
CLIENT_TIMEOUT = 600


@pytest.fixture
def scheduler(check_leaks, tmp_path):
    with cli_scheduler(tmp_path, "--no-dashboard") as (proc, address, _):
        yield proc, address


def _blocking_calls(client, pending):
    return {
        "submit": lambda: client.submit(inc, 1),
        "map": lambda: client.map(inc, [1, 2]),
        "gather": lambda: client.gather([pending]),
        "scatter": lambda: client.scatter([1, 2]),
        "scheduler_info": client.scheduler_info,
        "who_has": client.who_has,
        "nthreads": client.nthreads,
        "wait_for_workers": lambda: client.wait_for_workers(1),
        "run_on_scheduler": lambda: client.run_on_scheduler(abs, -1),
        "cancel": lambda: client.cancel([pending]),
    }


def test_blocking_client(scheduler):
    proc, address = scheduler
    client = Client(address, timeout=CLIENT_TIMEOUT)
    try:
        # the cluster has no worker: this future is still pending when the scheduler dies
        pending = client.submit(slow_inc, 1, delay=0)
        assert client.status == "running"
        proc.kill()
        proc.wait()
        wait_until(lambda: client.status != "running", timeout=30,
                   message="the client notices its scheduler is gone")
        assert client.status == "lost-scheduler"
        with pytest.raises(CommClosedError, match="lost the connection to the scheduler"):
            pending.result()
        for name, call in _blocking_calls(client, pending).items():
            with pytest.raises(CommClosedError, match="lost the connection"):
                call()
        assert "lost-scheduler" in repr(client)
    finally:
        client.close()
    assert client.status == "closed"


async def _async_calls(client, pending):
    calls = {
        "submit": lambda: client.submit(inc, 1),
        "map": lambda: client.map(inc, [1, 2]),
        "gather": lambda: client.gather([pending]),
        "await a future": lambda: pending,
        "scatter": lambda: client.scatter([1, 2]),
        "scheduler_info": client.scheduler_info,
        "who_has": client.who_has,
        "wait_for_workers": lambda: client.wait_for_workers(1),
    }
    raised = {}
    for name, call in calls.items():
        try:
            result = call()
            if hasattr(result, "__await__"):
                await result
        except CommClosedError as exc:
            raised[name] = str(exc)
    return calls.keys(), raised


def _check_async(names, raised, status):
    assert status == "lost-scheduler"
    assert set(raised) == set(names), f"did not raise: {set(names) - set(raised)}"
    assert all("lost the connection to the scheduler" in text for text in raised.values())


async def _lose_the_scheduler(proc, address, to_thread, sleep, deadline):
    """Under trio or asyncio: kill the scheduler under an asynchronous client,
    wait for it to notice, then make every call (each must raise at once)."""
    async with Client(address, asynchronous=True, timeout=CLIENT_TIMEOUT) as client:
        pending = client.submit(slow_inc, 1, delay=0)  # no worker: it stays pending
        proc.kill()
        await to_thread(proc.wait)
        async with deadline(30):
            while client.status == "running":
                await sleep(0.02)
        async with deadline(10):  # at once, not after CLIENT_TIMEOUT
            names, raised = await _async_calls(client, pending)
        return names, raised, client.status


def test_async_client_under_trio(scheduler):
    @contextlib.asynccontextmanager
    async def deadline(seconds):
        with trio.fail_after(seconds):
            yield

    _check_async(*trio.run(_lose_the_scheduler, *scheduler, trio.to_thread.run_sync,
                           trio.sleep, deadline))


def test_async_client_under_asyncio(scheduler):
    async def to_thread(fn):
        return await asyncio.get_running_loop().run_in_executor(None, fn)

    _check_async(*asyncio.run(_lose_the_scheduler(*scheduler, to_thread, asyncio.sleep,
                                                  asyncio.timeout)))
