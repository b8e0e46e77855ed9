"""The event log: log_event from the client, tasks and workers, get_events,
subscribe_topic handlers (sync and async) and event streams."""

import anyio
import pytest

from trioflow import Client, get_client, get_worker
from _util import unique, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


def test_log_event_from_client_and_tasks(face):
    topic, other = unique("topic"), unique("other")

    def from_task(topic):
        get_client().log_event(topic, "sync task")
        return True

    async def from_async_task(topic):
        await get_client().log_event(topic, "async task")
        return True

    def from_worker(topic):
        get_worker().log_event(topic, "worker")  # one-way, ahead of the task's result
        return True

    async def scenario(c):
        await face(c.log_event(topic, {"n": 1}))
        assert await face.result(c.submit(from_task, topic, pure=False), timeout=5)
        assert await face.result(c.submit(from_async_task, topic, pure=False), timeout=5)
        assert await face.result(c.submit(from_worker, topic, pure=False), timeout=5)
        await face(c.log_event([topic, other], "both"))
        events = await face(c.get_events(topic))
        assert [msg for _, msg in events] == [{"n": 1}, "sync task", "async task", "worker",
                                              "both"]
        stamps = [stamp for stamp, _ in events]
        assert stamps == sorted(stamps)
        assert [msg for _, msg in (await face(c.get_events()))[other]] == ["both"]
        assert await face(c.get_events(unique("never"))) == ()
        with pytest.raises(TypeError, match="msgpack"):
            await face(c.log_event(topic, object()))
    face.run(scenario)


def test_subscribe_topic_and_event_stream_blocking(inproc_client):
    c = inproc_client
    topic = unique("subscribed")
    received = []
    c.subscribe_topic(topic, received.append)
    c.log_event(topic, 1)
    c.log_event(topic, 2)
    wait_until(lambda: [msg for _, msg in received] == [1, 2], message="handler got events")
    c.unsubscribe_topic(topic)
    with pytest.raises(ValueError, match="No event handler"):
        c.unsubscribe_topic(topic)
    with c.events(topic) as stream:
        c.log_event(topic, 3)
        assert stream.get(timeout=5)[1] == 3
        with pytest.raises(TimeoutError):
            stream.get(timeout=0.05)
    # the stream got 3, so it reached this client after the handler was gone
    assert [msg for _, msg in received] == [1, 2]


async def test_event_stream_and_async_handler(anyio_backend):
    async with Client(processes=False, n_workers=1, threads_per_worker=1,
                      asynchronous=True) as client:
        handled = []

        async def handler(event):
            handled.append(event[1])

        client.subscribe_topic("handled", handler)
        with anyio.fail_after(10):
            async with client.events("streamed") as stream:
                await client.log_event("streamed", "one")
                await client.log_event(["streamed", "handled"], {"two": [2]})
                first, second = await anext(stream), await anext(stream)
            assert first[1] == "one"
            assert second[1]["two"][0] == 2
            while handled != [{"two": (2,)}] and handled != [{"two": [2]}]:
                await anyio.sleep(0.01)
        client.unsubscribe_topic("handled")


async def test_a_cancelled_wait_on_an_event_stream_loses_no_event(anyio_backend):
    async with Client(processes=False, n_workers=1, threads_per_worker=1,
                      asynchronous=True, dashboard_address=None) as client:
        with anyio.fail_after(10):
            async with client.events("kept") as stream:
                with anyio.move_on_after(0.1) as scope:
                    await anext(stream)  # nothing logged yet: waits, then is cancelled
                assert scope.cancel_called
                for n in range(3):
                    await client.log_event("kept", n)
                assert [(await anext(stream))[1] for _ in range(3)] == [0, 1, 2]
            # leaving the block ends an iteration over the stream
            assert [event async for event in stream] == []


def test_a_blocking_event_stream_ends_when_left(inproc_client):
    with inproc_client.events("left") as stream:
        inproc_client.log_event("left", "in")
        assert next(stream)[1] == "in"
    with pytest.raises(RuntimeError, match="was left"):
        stream.get(timeout=5)
