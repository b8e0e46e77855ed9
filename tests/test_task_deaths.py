"""No task takes its worker down beyond its own death (issue 13, point 4).

SystemExit and KeyboardInterrupt from a task err its future and the worker
runs on with all its slots; a task that ends its process (os._exit(3), a
segfault) is a worker death counted against it: the nanny starts a new
worker each time, and after allowed_failures the future errs with
KilledWorker naming each death's exit code or signal.  Each test ends with
the cluster at full strength: as many workers as it started with, each
running tasks on every one of its threads.
"""

import os

import pytest

from trioflow import Client, KilledWorker, LocalCluster, wait
from _dying_tasks import (
    asyncio_keyboard_interrupt,
    exit_process,
    keyboard_interrupt,
    pid,
    segfault,
    system_exit,
    trio_system_exit,
)
from _tasks import inc
from _util import wait_until

pytestmark = pytest.mark.timeout(120)

N_WORKERS = 2


@pytest.fixture
def client(check_leaks):
    # one thread per worker: a lost slot would hang the next task there
    with LocalCluster(processes=True, n_workers=N_WORKERS, threads_per_worker=1,
                      dashboard_address=None, allowed_failures=1) as cluster, \
            Client(cluster) as client:
        client.wait_for_workers(N_WORKERS, timeout=60)
        yield client


def _pids(client):
    return client.run(os.getpid)


def _at_full_strength(client, dead_pids=()):
    """Every worker is back, none of them a dead process, and each runs a task."""
    def back():
        try:
            pids = _pids(client)
        except Exception:  # noqa: BLE001 - a dead worker may be listed for a moment
            return None
        return pids if len(pids) == N_WORKERS and not set(dead_pids) & set(pids.values()) \
            else None

    pids = wait_until(back, timeout=60, message="the nannies restarted their workers")
    for address, worker_pid in pids.items():
        futures = [client.submit(pid, workers=[address], pure=False) for _ in range(3)]
        wait(futures, timeout=30)
        assert client.gather(futures) == [worker_pid] * 3
    assert client.gather(client.map(inc, range(20), pure=False)) == list(range(1, 21))
    return pids


@pytest.mark.parametrize("function, args, exception", [
    (system_exit, (1,), SystemExit),
    (keyboard_interrupt, (), KeyboardInterrupt),
    (trio_system_exit, (2,), SystemExit),
    (asyncio_keyboard_interrupt, (), KeyboardInterrupt),
], ids=["sys.exit(1)", "KeyboardInterrupt", "trio-task-sys.exit(2)", "asyncio-KeyboardInterrupt"])
def test_base_exceptions_err_the_future_and_the_worker_runs_on(client, function, args,
                                                               exception):
    before = _pids(client)
    address = sorted(before)[0]
    future = client.submit(function, *args, workers=[address])
    with pytest.raises(exception):
        future.result(timeout=30)
    assert future.status == "error"
    assert isinstance(future.exception(timeout=5), exception)
    if exception is SystemExit:
        assert future.exception().code == args[0]
    # the same processes, each with its thread slot free again
    assert _at_full_strength(client) == before


@pytest.mark.parametrize("function, args, how", [
    (exit_process, (3,), "exit code 3"),
    (exit_process, (0,), "exit code 0"),
    (segfault, (), "killed by signal 11 (SIGSEGV)"),
], ids=["os._exit(3)", "os._exit(0)", "segfault"])
def test_a_task_that_ends_its_process_is_killed_worker_naming_how(client, function, args, how):
    before = _pids(client)
    future = client.submit(function, *args)
    with pytest.raises(KilledWorker) as info:
        future.result(timeout=60)
    # allowed_failures=1: it killed two workers, each named with how it ended
    text = str(info.value)
    assert text.count(how) == 2, text
    assert "allowed_failures=1" in text
    # both workers were restarted by their nannies (os._exit(3) is not the
    # nanny's "scheduler lost"): the cluster is back at full strength
    after = _at_full_strength(client, dead_pids=before.values())
    assert not set(after.values()) & set(before.values())


def test_a_nanny_stops_when_its_worker_says_the_scheduler_is_gone(check_leaks):
    """The nanny's "don't restart" comes on its private pipe, not as an exit code."""
    import trio
    from trioflow import Nanny, Scheduler

    async def main():
        stop = trio.Event()

        async def run_scheduler(task_status=trio.TASK_STATUS_IGNORED):
            async with Scheduler() as scheduler:
                task_status.started(scheduler.address)
                await stop.wait()

        async with trio.open_nursery() as nursery:
            address = await nursery.start(run_scheduler)
            async with Nanny(address, nthreads=1) as nanny:
                stop.set()
                # the scheduler is gone: the worker says so and the nanny finishes
                with trio.fail_after(30):
                    await nanny.finished()
                status, restarts = nanny.status, nanny.restarts
        return status, restarts, nanny.process.returncode

    status, restarts, code = trio.run(main)
    assert (status, restarts, code) == ("finished", 0, 3)


def test_the_nanny_reports_how_its_worker_ended(check_leaks):
    import trio
    from trioflow import Nanny, Scheduler

    async def main():
        async with Scheduler(allowed_failures=0) as scheduler, \
                Nanny(scheduler.address, nthreads=1) as nanny, \
                Client(scheduler.address, asynchronous=True) as client:
            first = nanny.pid
            future = client.submit(exit_process, 7)
            with pytest.raises(KilledWorker, match=r"exit code 7"):
                await future
            with trio.fail_after(30):
                while nanny.restarts < 1 or len(scheduler.state.workers) < 1:
                    await trio.sleep(0.05)
            assert nanny.pid != first
            assert await client.submit(inc, 1) == 2

    trio.run(main)


def test_task_threads_hand_back_any_exception_and_live_on():
    import trio
    from trioflow.server.threads import TaskThreads

    def leave():
        raise SystemExit(4)

    async def main():
        pool = TaskThreads("test-pool")
        try:
            for _ in range(3):
                with pytest.raises(SystemExit):
                    await pool.run(leave)
                assert pool.busy() == 0
            assert await pool.run(lambda: 5) == 5
            assert len(pool._all) == 1  # one thread, reused every time
        finally:
            pool.shutdown()

    trio.run(main)
