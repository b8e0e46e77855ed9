"""Event: set/clear/wait and timeouts on every face, one set waking every
waiting task (sync and ``async def``), and a cancelled wait leaving nothing."""

import pytest

from trioflow import Event
from _faces import ASYNC_FACES
from _primitive_tasks import async_event_wait, event_set, event_wait
from _primitive_views import event_waiters, given_up_after


def test_event_set_clear_wait(face):
    async def scenario(client):
        event = Event("e-basic")
        assert not await face(event.is_set())
        assert await face(event.wait(timeout=0.05)) is False
        assert await face(event_waiters(client, "e-basic")) == 0
        await face(event.set())
        assert await face(event.is_set()) and await face(event.wait()) is True
        assert await face(event.wait(timeout=0)) is True
        await face(event.clear())
        assert not await face(event.is_set())
        assert await face(Event("e-basic").wait(timeout="20ms")) is False
    face.run(scenario)


def test_one_set_wakes_every_waiter_in_tasks(face):
    async def scenario(client):
        event = Event("e-tasks")
        # set by a task, then by the client
        for setter in ("task", "client"):
            # as many waiters as the cluster has slots (2 workers x 2 threads)
            waiters = (client.map(event_wait, [event] * 2, pure=False)
                       + client.map(async_event_wait, [event] * 2, pure=False))
            await face.until_equal(lambda: event_waiters(client, "e-tasks"), 4, timeout=20,
                                   message="tasks waiting on the event")
            assert not any(f.done() for f in waiters)
            if setter == "task":
                assert await face.result(client.submit(event_set, "e-tasks", pure=False),
                                         timeout=20)
            else:
                await face(event.set())
            assert await face(client.gather(waiters)) == [True] * 4
            await face(event.clear())
            await face.until_equal(lambda: event_waiters(client, "e-tasks"), 0)
    face.run(scenario)


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_a_cancelled_wait_leaves_nothing_behind(face):
    async def scenario(client):
        event = Event("ae-cancel")
        await given_up_after(0.05, event.wait())
        await face.until_equal(lambda: event_waiters(client, "ae-cancel"), 0)
    face.run(scenario)
