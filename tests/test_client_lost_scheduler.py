"""A client whose scheduler is gone says so (issue 13, point 5) and
survives the scheduler's restart (issue 18, point 5).

Once the connection is lost, ``client.status`` is "connecting" while the
client tries to connect again (for its ``timeout``), then "lost-scheduler";
its futures err with the connection error naming the address, and every new
call raises CommClosedError at once instead of waiting for a timeout; from a
blocking client, and from asynchronous ones under trio and under asyncio.
A scheduler restarted on the same port (with a new token in its file) is
connected to again and takes new work.  The scheduler is a
``trioflow scheduler`` process, killed with SIGKILL.
"""

import asyncio
import contextlib

import pytest
import trio

import socket

from trioflow import Client, CommClosedError, as_completed
from _tasks import inc, slow_inc
from _util import (cli_scheduler, cli_worker, start_cli, stop_process_group,
                   wait_for_scheduler_file, wait_until)

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
        assert client.status == "connecting"  # for CLIENT_TIMEOUT
        with pytest.raises(CommClosedError, match="lost the connection to the scheduler at ws://"):
            pending.result()
        for name, call in _blocking_calls(client, pending).items():
            with pytest.raises(CommClosedError, match="lost the connection"):
                call()
        assert "connecting" in repr(client)
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
    assert status == "connecting"
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


def test_the_client_gives_up_after_its_timeout(scheduler):
    proc, address = scheduler
    with Client(address, timeout=2) as client:
        pending = client.submit(slow_inc, 1, delay=0)
        proc.kill()
        proc.wait()
        wait_until(lambda: client.status == "lost-scheduler", timeout=30,
                   message="the client gives up after its 2 s")
        with pytest.raises(CommClosedError, match="could not connect again within 2"):
            client.submit(inc, 1)
        with pytest.raises(CommClosedError, match=f"lost the connection to the scheduler at {address}"):
            pending.result()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _scheduler_on(port, directory, log_name):
    """`trioflow scheduler` on a fixed port; it writes a new token to s.json."""
    scheduler_file = directory / "s.json"
    scheduler_file.unlink(missing_ok=True)
    log_path = directory / log_name
    proc = start_cli(["scheduler", "--port", str(port), "--no-dashboard",
                      "--scheduler-file", str(scheduler_file)], log_path)
    try:
        info = wait_for_scheduler_file(scheduler_file, proc, log_path)
        yield proc, info
    finally:
        stop_process_group(proc)


def test_a_client_survives_a_scheduler_restart(check_leaks, tmp_path):
    port = _free_port()
    with contextlib.ExitStack() as stack:
        first, info = stack.enter_context(_scheduler_on(port, tmp_path, "first.log"))
        stack.enter_context(cli_worker(tmp_path, "--scheduler-file", str(tmp_path / "s.json"),
                                       "--nthreads", "2", "--no-dashboard",
                                       log_name="worker1.log"))
        client = Client(scheduler_file=str(tmp_path / "s.json"), timeout=60)
        stack.callback(client.close)
        client.wait_for_workers(1, timeout=30)
        done = client.submit(inc, 1)
        assert done.result(timeout=30) == 2
        waiting = client.submit(slow_inc, 1, delay=60)  # running when the scheduler dies
        wait_until(lambda: any(client.processing().values()), timeout=30,
                   message="the slow task runs")
        finishing = as_completed([waiting])
        first.kill()
        first.wait()
        # the waiting future errs with the connection error, naming the address
        with pytest.raises(CommClosedError, match=f"scheduler at ws://127.0.0.1:{port}"):
            waiting.result(timeout=30)
        with pytest.raises(CommClosedError, match="connecting again"):
            next(finishing)  # as_completed says so instead of hanging
        assert client.status == "connecting"
        with pytest.raises(CommClosedError):
            done.result(timeout=30)  # its data went with the cluster
        with pytest.raises(CommClosedError, match="connecting again"):
            client.wait_for_workers(1, timeout=30)

        with _scheduler_on(port, tmp_path, "second.log") as (_, second), \
                cli_worker(tmp_path, "--scheduler-file", str(tmp_path / "s.json"),
                           "--nthreads", "1", "--no-dashboard", log_name="worker2.log"):
            assert second["token"] != info["token"]  # the client reads the file anew
            wait_until(lambda: client.status == "running", timeout=60,
                       message="the client connects to the restarted scheduler")
            client.wait_for_workers(1, timeout=30)
            # the same key as before the restart: a fresh future, computed again
            again = client.submit(inc, 1)
            assert again.key == done.key
            assert again.result(timeout=30) == 2
            assert client.gather(client.map(inc, range(10))) == list(range(1, 11))
            assert done.status == "error"  # the old futures keep what they said
            client.close()
