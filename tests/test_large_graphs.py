"""Deep and wide graphs through the public API, a story for every key, and a
core that fails loudly (closing its server) instead of running on."""
import asyncio
import logging
import uuid

import pytest
import trio

from trioflow import Client
from trioflow.server.scheduler import Scheduler
from trioflow.server.worker import Worker
from _tasks import add, inc, signal_and_wait, total
from _util import wait_until, worker_key_total

CHAIN = 3_000  # deeper than the old core's recursion could release


def _n_tasks(client):
    return client.scheduler_info()["n_tasks"]


def test_cancelling_a_deep_chain_while_its_first_task_runs_forgets_it(tmp_path):
    started, release = tmp_path / "started", tmp_path / "release"
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        f = client.submit(signal_and_wait, str(started), str(release))
        for _ in range(CHAIN):
            f = client.submit(inc, f)
        wait_until(started.exists, 30, message="first task started")
        f.cancel()
        wait_until(lambda: _n_tasks(client) == 0, 30, message="chain forgotten")
        release.touch()
        wait_until(lambda: worker_key_total(client) == 0, 30, message="workers hold nothing")
        # the cluster is healthy afterwards
        assert client.submit(inc, 1).result(timeout=10) == 2


def test_deep_chain_wide_fan_in_and_many_tasks_compute_and_leave_no_trace():
    with Client(processes=False, n_workers=2, threads_per_worker=2,
                dashboard_address=None) as client:
        f = client.submit(inc, 0)
        for _ in range(CHAIN - 1):
            f = client.submit(inc, f)
        assert f.result(timeout=60) == CHAIN
        parts = client.map(inc, range(2_000))
        fan_in = client.submit(total, parts)
        assert fan_in.result(timeout=60) == sum(range(1, 2_001))
        del f, parts, fan_in
        wait_until(lambda: _n_tasks(client) == 0, 30, message="scheduler forgot everything")
        wait_until(lambda: worker_key_total(client) == 0, 30, message="workers hold nothing")


def test_story_merges_scheduler_and_worker_transitions_in_time_order():
    with Client(processes=False, n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        f = client.submit(inc, 1)
        assert f.result(timeout=10) == 2
        story = client.story(f)
        assert story == client.story(f.key)
        times = [entry[-1] for entry in story]
        assert times == sorted(times)
        where = {entry[0] for entry in story}
        (worker,) = client.scheduler_info()["workers"]
        assert where == {"scheduler", worker}
        moves = [(e[0] == "scheduler", e[2], e[3]) for e in story if e[1] == f.key]
        assert (True, "waiting", "processing") in moves
        assert (True, "processing", "memory") in moves
        assert (False, "ready", "executing") in moves
        assert (False, "executing", "memory") in moves
        # the worker's moves name the scheduler's stimulus that caused them
        sent = next(e[4] for e in story if e[0] == "scheduler" and e[3] == "processing")
        assert any(e[0] == worker and e[4] == sent for e in story)
        assert all(e[4] for e in story), "a transition without a stimulus_id"
        # a stimulus id finds the transitions it caused
        assert {e[1] for e in client.story(sent)} >= {f.key}


def test_story_from_trio_and_asyncio_clients():
    async def chain_and_story(client):
        f = client.submit(inc, 0)
        for _ in range(500):
            f = client.submit(add, f, 1)
        assert await f == 501
        story = await client.story(f.key)
        assert any(e[0] == "scheduler" and e[3] == "memory" for e in story)

    async def under_trio():
        async with Client(processes=False, asynchronous=True, n_workers=1,
                          dashboard_address=None) as client:
            await chain_and_story(client)

    async def under_asyncio():
        async with Client(processes=False, asynchronous=True, n_workers=1,
                          dashboard_address=None) as client:
            await chain_and_story(client)

    trio.run(under_trio)
    asyncio.run(under_asyncio())


def test_a_scheduler_whose_core_fails_logs_the_story_and_closes(caplog):
    async def main():
        async with Scheduler(validate=True) as scheduler, Worker(scheduler.address):
            async with Client(scheduler.address, asynchronous=True) as client:
                f = client.submit(inc, 1, key=f"doomed-{uuid.uuid4().hex}")
                assert await f == 2
                # what a bug in the core could leave behind: a label no move knows
                scheduler.state.tasks[f.key].state = "bogus"
                with trio.fail_after(10):
                    f.release()
                    await scheduler._terminate_requested.wait()
                assert scheduler.status == "failed"
                assert scheduler.failure is not None

    with caplog.at_level(logging.CRITICAL, logger="trioflow.scheduler"):
        trio.run(main)
    (record,) = [r for r in caplog.records if "state machine failed" in r.getMessage()]
    assert "bogus" in record.getMessage() or "bogus" in str(record.exc_info[1])
    assert "doomed-" in record.getMessage()  # the key's story is in the log


def test_a_worker_whose_core_fails_closes(caplog):
    async def main():
        async with Scheduler() as scheduler, Worker(scheduler.address) as worker:
            async with Client(scheduler.address, asynchronous=True) as client:
                f = client.submit(inc, 1)
                assert await f == 2
                worker.state.tasks[f.key].state = "bogus"
                del f
                with trio.fail_after(10):
                    await worker.finished()
                assert worker.status == "failed"
                with trio.fail_after(10):
                    while scheduler.state.workers:
                        await trio.sleep(0.01)

    with caplog.at_level(logging.CRITICAL, logger="trioflow.worker"):
        trio.run(main)
    assert any("state machine failed" in r.getMessage() for r in caplog.records)


def test_cli_story_prints_a_keys_transitions(cli_cluster):
    import subprocess
    import sys

    from _util import subprocess_env

    with Client(cli_cluster.address, timeout=30) as client:
        f = client.submit(inc, 41)
        assert f.result(timeout=30) == 42
        result = subprocess.run(
            [sys.executable, "-m", "trioflow", "story", str(f.key),
             "--scheduler-file", str(cli_cluster.scheduler_file)],
            capture_output=True, text=True, timeout=60, env=subprocess_env())
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(" scheduler " in line and "processing -> memory" in line for line in lines), lines
    assert any("executing -> memory" in line for line in lines), lines
