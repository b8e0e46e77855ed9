"""Channels: a named stream of futures shared by every client of a scheduler.

Blocking clients, sync and ``async def`` tasks, and the asynchronous client
under trio and asyncio.  Synchronisation is by conditions with deadlines
(``wait_until``, ``anyio.fail_after``), never by bare sleeps.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import deque

import anyio
import pytest

from _util import TESTS_DIR, async_client, subprocess_env, wait_until
from trioflow import Client, worker_client
from trioflow.client.primitives.channels import Channel

ROOT = TESTS_DIR.parent


def inc(x):
    return x + 1


def slow_inc(x, delay=0.2):
    time.sleep(delay)
    return x + 1


def append_from_task(name, values):
    """A sync task appending futures it submits (through its worker's client)."""
    with worker_client() as c:
        chan = c.channel(name)
        for value in values:
            chan.append(c.submit(inc, value, pure=False))
        chan.flush()
    return len(values)


def sum_channel_in_task(name):
    """A sync task following a channel until it is stopped."""
    with worker_client() as c:
        return sum(future.result() for future in c.channel(name))


async def sum_channel_in_async_task(name):
    async with worker_client() as c:
        total = 0
        async for future in c.channel(name):
            total += await future
        return total


async def append_in_async_task(name, values):
    async with worker_client() as c:
        chan = c.channel(name)
        for value in values:
            chan.append(c.submit(inc, value, pure=False))
        await chan.flush()
        return [f.key for f in chan.futures]


async def _fresh(face, chan):
    """``chan.futures`` as the scheduler has them now: a blocking client's
    property asks the scheduler; an asynchronous one's is what the object saw
    last, so it is refreshed by ``await flush()`` first (as documented)."""
    if not face.blocking:
        await chan.flush()
    return chan.futures


def _keys(futures):
    return [f.key for f in futures]


# ---------------------------------------------------------------------------- every face, and blocking


def test_append_flush_and_snapshot_shared_by_clients(face):
    async def scenario(client):
        chan = client.channel("snapshot")
        assert client.channel("snapshot") is chan
        futures = [client.submit(inc, i) for i in range(3)]
        for future in futures:
            chan.append(future)
        await face(chan.flush())

        snapshot = chan.futures
        assert isinstance(snapshot, deque)
        assert _keys(snapshot) == _keys(futures)
        assert len(chan) == 3
        assert list(chan.futures) == list(snapshot)  # a copy; the channel is unchanged

        async with face.other_client(client) as other:
            theirs = other.channel("snapshot")
            assert _keys(await _fresh(face, theirs)) == _keys(futures)
            assert [await face(f.result(timeout=10)) for f in theirs.futures] == [1, 2, 3]
            late = other.submit(inc, 10)
            theirs.append(late)
            await face(theirs.flush())
            assert _keys(await _fresh(face, chan)) == _keys(futures) + [late.key]
    face.run(scenario)


def test_iteration_follows_appends_from_two_clients_until_stop(inproc_client):
    client = inproc_client
    chan = client.channel("follow")
    chan.append(client.submit(inc, 0))
    chan.flush()
    seen, finished = [], threading.Event()

    with Client(client.scheduler_address) as reader, Client(client.scheduler_address) as writer:
        def follow():
            try:
                for future in reader.channel("follow"):
                    seen.append(future.result(timeout=10))
            finally:
                finished.set()

        thread = threading.Thread(target=follow)
        thread.start()
        try:
            wait_until(lambda: seen == [1], message="the entry already there")
            writers_chan = writer.channel("follow")
            for i in range(1, 4):
                (chan if i % 2 else writers_chan).append(
                    (client if i % 2 else writer).submit(inc, i))
                wait_until(lambda: len(seen) == i + 1, message=f"entry {i}")
            assert seen == [1, 2, 3, 4]
            assert not finished.is_set()
            writers_chan.stop()
            assert finished.wait(10), "stop() did not end the iteration in the other client"
        finally:
            thread.join(10)
        assert not thread.is_alive()
        # after a stop a new iteration yields what is there and ends
        assert [f.result() for f in client.channel("follow")] == [1, 2, 3, 4]


def test_short_lived_appender_hands_its_futures_over(face):
    async def scenario(client):
        async with face.other_client(client) as short_lived:
            chan = short_lived.channel("handover")
            future = short_lived.submit(slow_inc, 41, pure=False)
            key = future.key
            chan.append(future)
            await face(chan.flush())
        # the appending client is gone; the channel keeps its work alive
        (kept,) = await _fresh(face, client.channel("handover"))
        assert kept.key == key
        assert await face(kept.result(timeout=10)) == 42
        assert (await face(client.who_has([kept])))[key]
        del kept
        # still held by the channel itself, not only by our snapshot
        async with face.other_client(client) as fresh:
            async def in_memory():
                return (await face(fresh.who_has())).get(key)
            assert await face.until(in_memory, message="key still in memory")
    face.run(scenario)


def test_appends_never_overtake_the_submissions_they_name(face):
    """submit-then-append with no pause: the append of each future must
    reach the scheduler after its submission, or the channel would hold a
    key the scheduler does not know yet."""
    async def scenario(client):
        chan = client.channel("overtake")
        for i in range(200):
            chan.append(client.submit(inc, i, pure=False))
        await face(chan.flush())
        assert [await face(f.result(timeout=10)) for f in chan.futures] == list(range(1, 201))
    face.run(scenario)


def wait_for_gate(name):
    import trioflow
    trioflow.Event(name).wait(timeout=30)
    return 0


def add_after(gate_value, i):
    return gate_value + i


def test_futures_made_in_the_loop_while_other_threads_drop_theirs(inproc_client):
    """Snapshots taken from two threads at once: each makes futures for the
    same pending keys in the client's loop while the other thread drops its
    own.  A want and a release for one key must reach the scheduler in the
    order they happened, or the surviving futures never hear their result."""
    import trioflow
    client = inproc_client
    gate = client.submit(wait_for_gate, "race-gate", pure=False)
    chan = client.channel("race")
    for i in range(60):
        chan.append(client.submit(add_after, gate, i, pure=False))
    chan.flush()
    done = threading.Event()

    def churn():
        while not done.is_set():
            snapshot = chan.futures
            del snapshot

    other = threading.Thread(target=churn)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: races show up
    other.start()
    try:
        for _ in range(40):
            snapshot = chan.futures
            del snapshot
    finally:
        done.set()
        other.join(timeout=30)
        sys.setswitchinterval(interval)
    kept = list(chan.futures)
    trioflow.Event("race-gate", client=client).set()
    assert [f.result(timeout=10) for f in kept] == list(range(60))
    assert gate.result(timeout=10) == 0


def test_maxlen_keeps_newest_and_releases_the_rest(face):
    async def scenario(client):
        chan = client.channel("bounded", maxlen=2)
        keys = []
        for i in range(5):
            future = client.submit(inc, i, pure=False)
            keys.append(future.key)
            chan.append(future)
            del future
        await face(chan.flush())
        snapshot = chan.futures
        assert snapshot.maxlen == 2
        assert _keys(snapshot) == keys[-2:]
        assert [await face(f.result(timeout=10)) for f in snapshot] == [4, 5]
        for key in keys[:3]:
            await face.until(lambda key=key: face.forgotten(client, key),
                             message=f"{key} released after it left the window")
        # another client asking for no bound gets the channel's bound
        async with face.other_client(client) as other:
            theirs = other.channel("bounded")
            assert _keys(await _fresh(face, theirs)) == keys[-2:]
            assert theirs.futures.maxlen == 2
    face.run(scenario)


def test_iteration_behind_the_window_resumes_at_its_start(inproc_client):
    client = inproc_client
    chan = client.channel("window", maxlen=3)
    for i in range(6):
        chan.append(client.submit(inc, i))
    chan.stop()
    assert [f.result(timeout=10) for f in chan] == [4, 5, 6]


def test_append_checks_its_argument(face):
    async def scenario(client):
        with pytest.raises(TypeError, match="futures"):
            client.channel("typed").append(42)
        with pytest.raises(ValueError, match="maxlen"):
            client.channel("typed-bound", maxlen=0)
    face.run(scenario)


def test_sync_tasks_append_and_follow(face):
    async def scenario(client):
        total = client.submit(sum_channel_in_task, "tasks", pure=False)
        writers = [client.submit(append_from_task, "tasks", range(k * 5, k * 5 + 5),
                                 pure=False) for k in range(2)]
        assert await face(client.gather(writers)) == [5, 5]
        chan = client.channel("tasks")
        async def both_appended():
            return len(await _fresh(face, chan)) == 10
        await face.until(both_appended, message="both tasks' appends")
        assert sorted([await face(f.result(timeout=10)) for f in chan.futures]) == list(
            range(1, 11))
        assert not total.done()
        await face(chan.stop())
        assert await face(total.result(timeout=10)) == sum(range(1, 11))
    face.run(scenario)


def test_channel_travels_into_a_task(inproc_client):
    client = inproc_client
    chan = client.channel("travels")
    chan.append(client.submit(inc, 1))
    chan.stop()

    def read(channel):
        return [f.result() for f in channel]

    assert client.submit(read, chan).result(timeout=10) == [2]


@pytest.mark.parametrize("example", ["channels_emit_combine.py", "channels_local_client.py"])
def test_examples_run(example, check_leaks):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / example)],
                          capture_output=True, text=True, timeout=50, env=subprocess_env(),
                          cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert done.stdout.strip()


# ---------------------------------------------------------------------------- async


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
async def test_async_client_appends_follows_and_stops(check_leaks):
    async with async_client() as client:
        chan = client.channel("async")
        assert isinstance(chan, Channel)
        seen = []

        async def follow():
            async for future in chan:
                seen.append(await future)

        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow)
                for i in range(3):
                    chan.append(client.submit(inc, i))
                await chan.flush()
                assert [await f for f in chan.futures] == [1, 2, 3]
                assert len(chan) == 3
                while len(seen) < 3:
                    await anyio.sleep(0.01)
                await chan.stop()
        assert seen == [1, 2, 3]
        with pytest.raises(TypeError, match="async for"):
            iter(chan).__next__()


def test_async_tasks_append_and_follow(face):
    async def scenario(client):
        total = client.submit(sum_channel_in_async_task, "async-tasks", pure=False)
        appender = client.submit(append_in_async_task, "async-tasks", [10, 20], pure=False)
        keys = await face.result(appender)
        assert len(keys) == 2
        chan = client.channel("async-tasks")
        await face(chan.flush())
        assert [f.key for f in chan.futures] == keys
        assert not total.done()
        await face(chan.stop())
        assert await face.result(total, timeout=20) == 32
    face.run(scenario)
