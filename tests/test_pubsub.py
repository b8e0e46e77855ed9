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
from _util import async_client, wait_until
from trioflow import Client, Pub, Sub

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


# ---------------------------------------------------------------------------- blocking


def test_client_to_client_every_subscriber_gets_every_message(inproc_client):
    client = inproc_client
    with Client(client.scheduler_address, set_as_default=False) as other:
        subs = [Sub("c2c"), Sub("c2c"), Sub("c2c", client=other)]
        pub = Pub("c2c", client=other)
        for i in range(N):
            pub.put({"i": i})
        for sub in subs:
            assert [sub.get(timeout=10)["i"] for _ in range(N)] == list(range(N))
        counts = _scheduler_pubsub(client)["counts"]
        assert counts["c2c"] == N  # clients go through the scheduler


def test_get_times_out_with_trioflow_timeout_error(inproc_client):
    sub = Sub("quiet")
    with pytest.raises(trioflow.TimeoutError):
        sub.get(timeout=0.05)
    with pytest.raises(TimeoutError):  # also the builtin
        sub.get(timeout="50ms")
    with pytest.raises(trioflow.TimeoutError):
        sub.get(timeout=datetime.timedelta(milliseconds=50))
    Pub("quiet").put("late")
    assert sub.get(timeout=10) == "late"


def test_messages_without_subscribers_are_dropped(inproc_client):
    pub = Pub("drop")
    pub.put("nobody hears this")
    sub = Sub("drop")
    pub.put("heard")
    assert sub.get(timeout=10) == "heard"
    with pytest.raises(trioflow.TimeoutError):
        sub.get(timeout=0.05)


def test_worker_to_worker_goes_direct(inproc_client):
    client = inproc_client
    a, b = _two_workers(client)
    receiver = client.submit(receive, "w2w", N, 2, workers=[b], pure=False)
    sender = client.submit(publish_when_subscribed, "w2w", N, workers=[a], pure=False)
    assert sender.result(timeout=30) == [b]
    assert receiver.result(timeout=30) == [list(range(N))] * 2
    info = _scheduler_pubsub(client)
    assert info["counts"].get("w2w", 0) == 0, "worker-to-worker messages went through the scheduler"


def test_worker_to_worker_between_processes(proc_client):
    client = proc_client
    a, b = _two_workers(client)
    receiver = client.submit(receive, "w2w-proc", N, workers=[b], pure=False)
    sender = client.submit(publish_when_subscribed, "w2w-proc", N, workers=[a], pure=False)
    assert sender.result(timeout=30) == [b]
    assert receiver.result(timeout=30) == [list(range(N))]
    assert _scheduler_pubsub(client)["counts"].get("w2w-proc", 0) == 0


def test_publisher_and_subscriber_on_one_worker(inproc_client):
    client = inproc_client
    a, _ = _two_workers(client)
    receiver = client.submit(receive_by_iteration, "local", N, workers=[a], pure=False)
    sender = client.submit(publish_when_subscribed, "local", N, workers=[a], pure=False)
    assert sender.result(timeout=30) == [a]
    assert receiver.result(timeout=30) == list(range(N))


def test_worker_to_client(inproc_client):
    client = inproc_client
    sub = Sub("w2c")  # returns once the scheduler knows: the task below finds it
    sender = client.submit(publish_now, "w2c", N, pure=False)
    assert [sub.get(timeout=10) for _ in range(N)] == list(range(N))
    assert sender.result(timeout=10) == N
    assert _scheduler_pubsub(client)["counts"]["w2c"] == N


def test_client_to_workers_and_worker_to_workers_and_client(inproc_client):
    client = inproc_client
    a, b = _two_workers(client)
    receivers = [client.submit(receive, "mixed", 2 * N, workers=[w], pure=False) for w in (a, b)]
    wait_until(lambda: _scheduler_pubsub(client)["topics"].get("mixed", {}).get("workers")
               == [a, b], message="both workers subscribed")
    sub = Sub("mixed")
    pub = Pub("mixed")
    for i in range(N):
        pub.put(("client", i))
    # a worker's publisher sees the other worker and the client subscription
    assert client.submit(publish_now, "mixed", N, "worker", workers=[a],
                         pure=False).result(10) == N
    expected = {"client": list(range(N)), "worker": list(range(N))}
    assert _by_source(sub.get(timeout=10) for _ in range(2 * N)) == expected
    for receiver in receivers:
        (got,) = receiver.result(timeout=20)
        assert _by_source(got) == expected


def test_unused_subscriptions_are_forgotten(inproc_client):
    client = inproc_client
    a, _ = _two_workers(client)
    sub = Sub("forget")
    assert client.submit(receive, "forget", 0, workers=[a], pure=False).result(10) == [[]]
    del sub
    gc.collect()
    wait_until(lambda: "forget" not in _scheduler_pubsub(client)["topics"],
               message="the scheduler forgot the topic once nobody subscribed")


async def subscribe_and_drop(topic):
    Sub(topic)  # made and finalized in the worker's event loop
    return True


def test_a_sub_dropped_in_the_workers_loop_is_forgotten(inproc_client):
    client = inproc_client
    assert client.submit(subscribe_and_drop, "dropped", pure=False).result(10)
    wait_until(lambda: "dropped" not in _scheduler_pubsub(client)["topics"],
               message="the scheduler forgot the topic of a Sub dropped in the loop")


def wait_forever(topic):
    Sub(topic).get()


def test_cancelling_a_task_waiting_in_get_stops_it(inproc_client):
    client = inproc_client
    waiter = client.submit(wait_forever, "never", pure=False)
    wait_until(lambda: "never" in _scheduler_pubsub(client)["topics"], message="subscribed")
    waiter.cancel()
    wait_until(lambda: not any(client.run(lambda dask_worker: len(dask_worker.executing))
                               .values()), message="the waiting task stopped")


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
def test_get_in_a_task_times_out(inproc_client, task):
    assert "no message on topic 'quiet-task'" in inproc_client.submit(
        task, "quiet-task", pure=False).result(10)


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
