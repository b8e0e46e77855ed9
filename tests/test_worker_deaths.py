"""Worker processes killed with SIGKILL: results still arrive, nannies restart workers."""

import os
import signal

import pytest

import trioflow
from trioflow import Client
from _tasks import inc, inc_holding_reruns, slow_inc
from _util import wait_until, worker_pids

pytestmark = pytest.mark.timeout(120)

N_TASKS = 40
DELAY = 0.2


def _kill(pid):
    os.kill(pid, signal.SIGKILL)


def _restarted(client, killed_pid, n_workers=2):
    """True once ``n_workers`` workers answer and none of them is the killed process."""
    try:
        pids = client.run(os.getpid)
    except Exception:  # noqa: BLE001 - the dead worker may still be listed for a moment
        return False
    return len(pids) == n_workers and killed_pid not in pids.values()


def _kill_one_worker_mid_computation(client):
    """Run N_TASKS slow tasks, SIGKILL one worker while they run, check the results."""
    pids = worker_pids(client)
    assert len(pids) == 2, pids
    victim_address, victim_pid = sorted(pids.items())[0]

    futures = client.map(slow_inc, range(N_TASKS), delay=DELAY)
    # Both workers are busy once a few tasks have finished and many remain.
    wait_until(lambda: sum(f.done() for f in futures) >= 2, timeout=30, message="tasks started")
    assert sum(f.done() for f in futures) < N_TASKS
    _kill(victim_pid)

    trioflow.wait(futures, timeout=90)
    assert client.gather(futures) == [i + 1 for i in range(N_TASKS)]

    client.wait_for_workers(2, timeout=60)
    wait_until(
        lambda: _restarted(client, victim_pid),
        timeout=60,
        message=f"worker {victim_address} (pid {victim_pid}) restarted by its nanny",
    )
    assert client.gather(client.map(inc, range(10), pure=False)) == list(range(1, 11))


def test_processes_worker_killed_mid_computation_gather_succeeds(proc_client):
    _kill_one_worker_mid_computation(proc_client)


def test_processes_key_lost_with_worker_is_recomputed(proc_client):
    held = proc_client.submit(inc, 1)
    assert held.result(timeout=30) == 2
    (holder,) = proc_client.who_has([held])[held.key]
    holder_pid = proc_client.run(os.getpid)[holder]
    _kill(holder_pid)

    # Submitted before the scheduler necessarily knows the holder is gone.
    dependent = proc_client.submit(inc, held)
    assert dependent.result(timeout=60) == 3
    assert held.result(timeout=60) == 2
    wait_until(lambda: _restarted(proc_client, holder_pid), timeout=60, message="nanny restart")
    assert holder_pid not in proc_client.run(os.getpid).values()


def test_processes_a_future_is_lost_while_its_data_is_computed_again(proc_client, tmp_path):
    runs, release = tmp_path / "runs", tmp_path / "release"
    held = proc_client.submit(inc_holding_reruns, str(runs), str(release), 1)
    assert held.result(timeout=30) == 2 and held.status == "finished"
    (holder,) = proc_client.who_has([held])[held.key]
    holder_pid = proc_client.run(os.getpid)[holder]
    _kill(holder_pid)

    # as in dask: not done while the scheduler computes it again
    wait_until(lambda: held.status == "lost", timeout=30, message="future marked lost")
    assert not held.done() and "lost" in repr(held)
    wait_until(lambda: runs.read_text().count("run") == 2, timeout=60, message="rerun started")
    assert held.status == "lost"
    release.touch()
    assert held.result(timeout=60) == 2
    assert held.status == "finished" and held.done()
    wait_until(lambda: _restarted(proc_client, holder_pid), timeout=60, message="nanny restart")


def test_cli_worker_killed_mid_computation(cli_cluster):
    with Client(cli_cluster.address, timeout=30) as client:
        client.wait_for_workers(2, timeout=30)
        held = client.submit(inc, 10)
        assert held.result(timeout=30) == 11
        (holder,) = client.who_has([held])[held.key]
        pids = worker_pids(client)
        assert len(pids) == 2, pids

        futures = client.map(slow_inc, range(N_TASKS), delay=DELAY)
        wait_until(lambda: sum(f.done() for f in futures) >= 2, timeout=30, message="started")
        # Kill the worker holding `held`, so the later task has to recompute it.
        _kill(pids[holder])

        trioflow.wait(futures, timeout=90)
        assert client.gather(futures) == [i + 1 for i in range(N_TASKS)]
        assert client.submit(inc, held).result(timeout=60) == 12

        client.wait_for_workers(2, timeout=60)
        wait_until(
            lambda: _restarted(client, pids[holder]),
            timeout=60,
            message="CLI nanny restarts its killed worker",
        )
        assert client.gather(client.map(inc, range(10), pure=False)) == list(range(1, 11))


def test_a_silent_worker_is_removed_and_its_connection_closed(caplog):
    """A worker that stays connected but sends no heartbeat: after worker_ttl the
    scheduler's core removes it and the shell closes its connection."""
    import trio

    from trioflow.comm import connect
    from trioflow.errors import CommClosedError
    from trioflow.server.scheduler import Scheduler

    silent = "inproc://silent-worker"

    async def main():
        with trio.fail_after(30):
            async with Scheduler(address="inproc://", worker_ttl=1.0) as s:
                async with trio.open_nursery() as nursery:
                    comm = await connect(s.address, nursery, info={
                        "role": "worker", "address": silent, "nthreads": 1})
                    while silent not in s.state.workers:
                        await trio.sleep(0.01)
                    with pytest.raises(CommClosedError):
                        while True:  # whatever the scheduler sends, until it hangs up
                            await comm.recv()
                    assert silent not in s.state.workers
                    nursery.cancel_scope.cancel()

    with caplog.at_level("WARNING", logger="trioflow.scheduler"):
        trio.run(main)
    assert f"worker {silent} missed its heartbeats; removed" in caplog.text
