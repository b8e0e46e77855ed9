"""What the coordination-primitive tests look at and do beside the primitive
itself: the scheduler's side of a queue, lease, event or variable, a blocking
call made in a thread, an awaitable cancelled at once, and a lease held by a
client process that is killed.

The views return ``client.run_on_scheduler(...)``: the value on a blocking
client, an awaitable on an asynchronous one (``await face(view(...))``)."""

import anyio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading

from trioflow import Client, Lock, Semaphore
from _util import subprocess_env, wait_until


def queue_state(client, name):
    """(items, requests waiting) of a queue on the scheduler; None if it has no state."""
    def look(dask_scheduler, name=name):
        state = dask_scheduler.extensions["queues"].queues.get(name)
        return None if state is None else (len(state.items), state.busy)
    return client.run_on_scheduler(look)


def lease_state(client, name, extension="locks"):
    """(holders, waiters) of a lock or semaphore on the scheduler."""
    def look(dask_scheduler, name=name, extension=extension):
        table = dask_scheduler.extensions[extension].tables.get(name)
        return (0, 0) if table is None else (len(table.holders), len(table.waiters))
    return client.run_on_scheduler(look)


def event_waiters(client, name):
    def look(dask_scheduler, name=name):
        state = dask_scheduler.extensions["events"].events.get(name)
        return 0 if state is None else state.waiting
    return client.run_on_scheduler(look)


def variable_waiters(client, name):
    def look(dask_scheduler, name=name):
        state = dask_scheduler.extensions["variables"].variables.get(name)
        return 0 if state is None else state.waiting
    return client.run_on_scheduler(look)


def in_thread(fn, *args):
    """Run ``fn(*args)`` in a thread; returns (thread, outcome dict)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: B036 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="primitive-test-caller")
    thread.start()
    return thread, outcome


async def cancelled_at_once(awaitable):
    """Await ``awaitable`` in a scope that is already cancelled: the request
    leaves, and the caller gives up before any reply can arrive."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await awaitable
    return scope.cancelled_caught


async def given_up_after(seconds, awaitable):
    """Await ``awaitable`` until it returns or ``seconds`` pass, then give up."""
    with anyio.move_on_after(seconds):
        await awaitable


async def capture(outcome, awaitable_fn):
    try:
        outcome["value"] = await awaitable_fn()
    except Exception as exc:
        outcome["error"] = exc


async def outcome_of_a_call_whose_client_closes(face, client, call, view, waiting):
    """Make ``call(other)`` from a second asynchronous client, wait until
    ``await view(client)`` is ``waiting`` (the call is blocked on the
    scheduler), then close that client; return the call's outcome dict."""
    outcome = {}
    async with anyio.create_task_group() as tg:
        async with face.other_client(client) as other:
            tg.start_soon(capture, outcome, lambda: call(other))
            await face.until_equal(lambda: view(client), waiting)
    return outcome


HOLDER_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, threading
    from trioflow import Client, Lock, Semaphore
    address, kind, name, marker = sys.argv[1:5]
    client = Client(address, timeout=30)
    held = Semaphore(max_leases=1, name=name) if kind == "semaphore" else Lock(name)
    assert held.acquire(timeout=30)
    pathlib.Path(marker).touch()
    threading.Event().wait(120)  # hold until killed
    """
)


@contextlib.contextmanager
def ws_client():
    """A client on an in-process cluster reachable over ws:// from other processes."""
    with Client(processes=False, protocol="ws", n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        yield client


def check_lease_of_a_killed_client_process_is_given_back(tmp_path, kind):
    """A subprocess client holds the ``kind`` ("lock" or "semaphore"); this
    process waits behind it; killing the subprocess hands the lease over."""
    with ws_client() as client:
        name = f"killed-holder-{kind}"
        marker = tmp_path / "acquired"
        held = Semaphore(max_leases=1, name=name) if kind == "semaphore" else Lock(name)
        extension = "semaphores" if kind == "semaphore" else "locks"
        proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER_SCRIPT, client.scheduler_address, kind, name,
             str(marker)], env=subprocess_env(), stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: marker.exists() or proc.poll() is not None, timeout=60,
                       message="the subprocess client acquired")
            assert proc.poll() is None, "the holder process exited early"
            assert not held.acquire(timeout=0.05)
            thread, outcome = in_thread(held.acquire, 30)
            wait_until(lambda: lease_state(client, name, extension) == (1, 1),
                       message="waiting behind the subprocess")
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
            thread.join(30)
            assert outcome == {"value": True}, "the dead holder's lease was not given back"
            assert lease_state(client, name, extension) == (1, 0)
            held.release()
            assert held.get_value() == 0
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)
