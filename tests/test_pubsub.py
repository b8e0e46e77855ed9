"""Pub/Sub: client to client, worker to worker (directly, not through the
scheduler), worker to client and client to worker; from blocking clients,
sync tasks, ``async def`` tasks and the asynchronous client under trio and
asyncio.  Synchronisation is by conditions with deadlines, never bare sleeps.
"""
from __future__ import annotations

import datetime
import gc
import time

import anyio
import pytest
import trio

import trioflow
from _util import async_client
from trioflow import Pub, Sub

N = 300


# ---------------------------------------------------------------------------- tasks


def publish_when_subscribed(topic, n, expected_workers=1):
    """Sync task: wait (with a deadline) until the subscribers' workers are
    known, then publish 0..n-1."""
    pub = Pub(topic)
    deadline = time.monotonic() + 20
    while len(pub.subscribers) < expected_workers:
        if time.monotonic() > deadline:
            raise AssertionError(f"no subscriber on {topic!r}: {pub.subscribers}")
        time.sleep(0.01)
    for i in range(n):
        pub.put(i)
    return sorted(pub.subscribers)


def publish_now(topic, n, tag=None):
    """Sync task: publish at once (a subscriber made before this task exists
    is known to the scheduler, so nothing is lost)."""
    pub = Pub(topic)
    for i in range(n):
        pub.put(i if tag is None else (tag, i))
    return n


async def async_publish_now(topic, n, tag=None):
    pub = Pub(topic)
    for i in range(n):
        pub.put(i if tag is None else (tag, i))
    return n


def _by_source(messages):
    """{tag: [i, ...]} of (tag, i) messages, in the order received."""
    found = {}
    for tag, i in messages:
        found.setdefault(tag, []).append(i)
    return found


def receive(topic, n, subscribers=1):
    """Sync task: ``subscribers`` Subs on this worker, each must get 0..n-1."""
    subs = [Sub(topic) for _ in range(subscribers)]
    return [[sub.get(timeout=20) for _ in range(n)] for sub in subs]


def receive_by_iteration(topic, n):
    sub = Sub(topic)
    got = []
    for msg in sub:
        got.append(msg)
        if len(got) == n:
            return got


async def async_publish_when_subscribed(topic, n):
    pub = Pub(topic)
    with trio.fail_after(20):
        while not pub.subscribers:
            await trio.sleep(0.01)
    for i in range(n):
        pub.put(i)
    return n


async def async_receive(topic, n):
    sub = await Sub(topic)
    got = [await sub.get(timeout=20)]
    async for msg in sub:
        got.append(msg)
        if len(got) == n:
            return got


def _scheduler_pubsub(client):
    def info(dask_scheduler):
        ext = dask_scheduler.extensions["pubsub"]
        return {"counts": dict(ext.message_counts),
                "topics": {name: {"publishers": sorted(t.publishers),
                                  "workers": sorted(t.workers), "clients": len(t.clients)}
                           for name, t in ext.topics.items()}}
    return client.run_on_scheduler(info)


def _two_workers(client):
    return sorted(client.scheduler_info()["workers"])[:2]


async def _two_workers_of(face, client):
    return sorted((await face(client.scheduler_info()))["workers"])[:2]


# ---------------------------------------------------------------------------- every face


def test_client_to_client_every_subscriber_gets_every_message(face):
    async def scenario(client):
        async with face.other_client(client) as other:
            subs = [await face(Sub("c2c")), await face(Sub("c2c")),
                    await face(Sub("c2c", client=other))]
            pub = Pub("c2c", client=other)
            for i in range(N):
                pub.put({"i": i})
            for sub in subs:
                assert [(await face(sub.get(timeout=10)))["i"] for _ in range(N)] == list(
                    range(N))
            counts = (await face(_scheduler_pubsub(client)))["counts"]
            assert counts["c2c"] == N  # clients go through the scheduler
    face.run(scenario)


def test_get_times_out_with_trioflow_timeout_error(face):
    async def scenario(client):
        sub = await face(Sub("quiet"))
        with pytest.raises(trioflow.TimeoutError):
            await face(sub.get(timeout=0.05))
        with pytest.raises(TimeoutError):  # also the builtin
            await face(sub.get(timeout="50ms"))
        with pytest.raises(trioflow.TimeoutError):
            await face(sub.get(timeout=datetime.timedelta(milliseconds=50)))
        Pub("quiet").put("late")
        assert await face(sub.get(timeout=10)) == "late"
    face.run(scenario)


def test_messages_without_subscribers_are_dropped(face):
    async def scenario(client):
        pub = Pub("drop")
        pub.put("nobody hears this")
        sub = await face(Sub("drop"))
        pub.put("heard")
        assert await face(sub.get(timeout=10)) == "heard"
        with pytest.raises(trioflow.TimeoutError):
            await face(sub.get(timeout=0.05))
    face.run(scenario)


def test_worker_to_worker_goes_direct(face):
    async def scenario(client):
        a, b = await _two_workers_of(face, client)
        receiver = client.submit(receive, "w2w", N, 2, workers=[b], pure=False)
        sender = client.submit(publish_when_subscribed, "w2w", N, workers=[a], pure=False)
        assert await face(sender.result(timeout=30)) == [b]
        assert await face(receiver.result(timeout=30)) == [list(range(N))] * 2
        info = await face(_scheduler_pubsub(client))
        assert info["counts"].get("w2w", 0) == 0, (
            "worker-to-worker messages went through the scheduler")
    face.run(scenario)


def test_worker_to_worker_between_processes(proc_client):
    client = proc_client
    a, b = _two_workers(client)
    receiver = client.submit(receive, "w2w-proc", N, workers=[b], pure=False)
    sender = client.submit(publish_when_subscribed, "w2w-proc", N, workers=[a], pure=False)
    assert sender.result(timeout=30) == [b]
    assert receiver.result(timeout=30) == [list(range(N))]
    assert _scheduler_pubsub(client)["counts"].get("w2w-proc", 0) == 0


def test_publisher_and_subscriber_on_one_worker(face):
    async def scenario(client):
        a, _ = await _two_workers_of(face, client)
        receiver = client.submit(receive_by_iteration, "local", N, workers=[a], pure=False)
        sender = client.submit(publish_when_subscribed, "local", N, workers=[a], pure=False)
        assert await face(sender.result(timeout=30)) == [a]
        assert await face(receiver.result(timeout=30)) == list(range(N))
    face.run(scenario)


def test_worker_to_client(face):
    async def scenario(client):
        # returns once the scheduler knows: the task below finds it
        sub = await face(Sub("w2c"))
        sender = client.submit(publish_now, "w2c", N, pure=False)
        assert [await face(sub.get(timeout=10)) for _ in range(N)] == list(range(N))
        assert await face(sender.result(timeout=10)) == N
        assert (await face(_scheduler_pubsub(client)))["counts"]["w2c"] == N
    face.run(scenario)


def test_client_to_workers_and_worker_to_workers_and_client(face):
    async def scenario(client):
        a, b = await _two_workers_of(face, client)
        receivers = [client.submit(receive, "mixed", 2 * N, workers=[w], pure=False)
                     for w in (a, b)]

        async def both_subscribed():
            topics = (await face(_scheduler_pubsub(client)))["topics"]
            return topics.get("mixed", {}).get("workers") == [a, b]
        await face.until(both_subscribed, message="both workers subscribed")
        sub = await face(Sub("mixed"))
        pub = Pub("mixed")
        for i in range(N):
            pub.put(("client", i))
        # a worker's publisher sees the other worker and the client subscription
        assert await face(client.submit(publish_now, "mixed", N, "worker", workers=[a],
                                        pure=False).result(10)) == N
        expected = {"client": list(range(N)), "worker": list(range(N))}
        assert _by_source([await face(sub.get(timeout=10)) for _ in range(2 * N)]) == expected
        for receiver in receivers:
            (got,) = await face(receiver.result(timeout=20))
            assert _by_source(got) == expected
    face.run(scenario)


def test_unused_subscriptions_are_forgotten(face):
    async def scenario(client):
        a, _ = await _two_workers_of(face, client)
        sub = await face(Sub("forget"))
        assert await face(client.submit(receive, "forget", 0, workers=[a],
                                        pure=False).result(10)) == [[]]
        del sub
        gc.collect()

        async def forgotten():
            return "forget" not in (await face(_scheduler_pubsub(client)))["topics"]
        await face.until(forgotten,
                         message="the scheduler forgot the topic once nobody subscribed")
    face.run(scenario)


async def subscribe_and_drop(topic):
    Sub(topic)  # made and finalized in the worker's event loop
    return True


def test_a_sub_dropped_in_the_workers_loop_is_forgotten(face):
    async def scenario(client):
        assert await face(client.submit(subscribe_and_drop, "dropped", pure=False).result(10))

        async def forgotten():
            return "dropped" not in (await face(_scheduler_pubsub(client)))["topics"]
        await face.until(forgotten,
                         message="the scheduler forgot the topic of a Sub dropped in the loop")
    face.run(scenario)


def wait_forever(topic):
    Sub(topic).get()


def test_cancelling_a_task_waiting_in_get_stops_it(face):
    async def scenario(client):
        waiter = client.submit(wait_forever, "never", pure=False)

        async def subscribed():
            return "never" in (await face(_scheduler_pubsub(client)))["topics"]
        await face.until(subscribed, message="subscribed")
        await face(waiter.cancel())

        async def stopped():
            running = await face(client.run(lambda dask_worker: len(dask_worker.executing)))
            return not any(running.values())
        await face.until(stopped, message="the waiting task stopped")
    face.run(scenario)


def get_with_timeout(topic):
    """Sync task: a get on a quiet topic ends with trioflow.TimeoutError."""
    try:
        Sub(topic).get(timeout=0.1)
    except trioflow.TimeoutError as exc:
        return str(exc)
    return "no timeout"


async def async_get_with_timeout(topic):
    try:
        await Sub(topic).get(timeout=0.1)
    except trioflow.TimeoutError as exc:
        return str(exc)
    return "no timeout"


@pytest.mark.parametrize("task", [get_with_timeout, async_get_with_timeout])
def test_get_in_a_task_times_out(face, task):
    async def scenario(client):
        assert "no message on topic 'quiet-task'" in await face(client.submit(
            task, "quiet-task", pure=False).result(10))
    face.run(scenario)


def test_pub_and_sub_take_worker_or_client_not_both(inproc_client):
    with pytest.raises(ValueError, match="not both"):
        Pub("x", worker=object(), client=inproc_client)


# ---------------------------------------------------------------------------- async


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


@pytest.mark.anyio
async def test_async_client_pub_sub(check_leaks):
    async with async_client() as client:
        sub = await Sub("async-c2c", client=client)
        pub = Pub("async-c2c", client=client)
        for i in range(N):
            pub.put(i)
        with anyio.fail_after(20):
            got = [await sub.get(timeout=10)]
            async for msg in sub:
                got.append(msg)
                if len(got) == N:
                    break
        assert got == list(range(N))
        with pytest.raises(trioflow.TimeoutError):
            await sub.get(timeout=0.05)


@pytest.mark.anyio
async def test_a_cancelled_get_leaves_every_message_for_the_next(check_leaks):
    async with async_client() as client:
        sub = await Sub("async-cancelled-get", client=client)
        pub = Pub("async-cancelled-get", client=client)
        with anyio.move_on_after(0.2) as scope:
            await sub.get()  # waits in a long poll on the scheduler, then is cancelled
        assert scope.cancel_called
        for i in range(3):
            pub.put(i)
        with anyio.fail_after(20):
            assert [await sub.get(timeout=10) for _ in range(3)] == [0, 1, 2]


def test_async_tasks_worker_to_worker(face):
    async def scenario(client):
        a, b = sorted((await face(client.scheduler_info()))["workers"])
        receiver = client.submit(async_receive, "async-w2w", N, workers=[b], pure=False)
        sender = client.submit(async_publish_when_subscribed, "async-w2w", N, workers=[a],
                               pure=False)
        assert await face.result(sender, timeout=30) == N
        assert await face.result(receiver, timeout=30) == list(range(N))
        info = await face(client.run_on_scheduler(
            lambda dask_scheduler: dict(dask_scheduler.extensions["pubsub"].message_counts)))
        assert info.get("async-w2w", 0) == 0
    face.run(scenario)


def test_a_client_hears_sync_and_async_tasks(face):
    async def scenario(client):
        sub = await face(Sub("async-w2c", client=client))
        sync = client.submit(publish_now, "async-w2c", N, "sync", pure=False)
        assert await face.result(sync, timeout=30) == N
        asyn = client.submit(async_publish_now, "async-w2c", N, "async", pure=False)
        assert await face.result(asyn, timeout=30) == N
        got = [await face(sub.get(timeout=10)) for _ in range(2 * N)]
        assert _by_source(got) == {"sync": list(range(N)), "async": list(range(N))}
    face.run(scenario)
