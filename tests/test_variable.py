"""Variable: set/get/delete and timeouts on every face, a blocked get woken by
set, the future it holds kept alive, sync and ``async def`` tasks, and two
clients sharing one."""

import gc

import pytest

import trioflow
from trioflow import Variable
from _primitive_tasks import (
    async_variable_roundtrip,
    inc,
    variable_get,
    variable_set,
    variable_set_future,
)
from _primitive_views import in_thread, variable_waiters
from _util import barrier, key_is_forgotten, key_is_held, wait_until


def test_variable_set_get_delete_and_timeout(face):
    async def scenario(client):
        v = Variable("v-basic")
        with pytest.raises(trioflow.TimeoutError):
            await face(v.get(timeout=0.05))
        assert await face(variable_waiters(client, "v-basic")) == 0
        await face(v.set(1))
        assert await face(v.get()) == 1
        await face(v.set({"x": [1, 2]}))
        assert await face(v.get(timeout=1)) == {"x": [1, 2]}
        future = client.submit(sum, [1, 2])
        await face(v.set(future))
        assert await face.result(await face(v.get())) == 3
        await face(v.delete())
        with pytest.raises(trioflow.TimeoutError):
            await face(v.get(timeout="50ms"))
        with pytest.raises(trioflow.TimeoutError):
            await face(v.get(timeout="20ms"))
    face.run(scenario)


def test_variable_blocked_get_wakes_on_set(inproc_client):
    v = Variable("v-basic")
    v.set(1)
    v.delete()
    thread, outcome = in_thread(v.get, 10)
    wait_until(lambda: variable_waiters(inproc_client, "v-basic") == 1, message="get waiting")
    v.set("late")
    thread.join(10)
    assert outcome == {"value": "late"}


def test_variable_keeps_its_future_alive_while_it_is_the_value(inproc_client):
    client = inproc_client
    v = Variable("v-future")
    future = client.submit(inc, 10)
    key = future.key
    v.set(future)
    del future
    gc.collect()
    barrier(client)
    assert key_is_held(client, key)
    first, second = v.get(), v.get()
    assert first.result(timeout=10) == 11 and second.key == key
    del first, second
    gc.collect()
    barrier(client)
    assert key_is_held(client, key), "reading the variable let go of its value"
    v.set(None)
    wait_until(lambda: key_is_forgotten(client, key), message="replaced value released")
    assert v.get() is None


def test_future_taken_while_the_taker_drops_its_own_copy_stays_alive(inproc_client):
    """The getter's client already holds a future of the key and lets go of
    it while the reply is on its way: the key must outlive that moment.
    (The same for Queue is in test_queue.py.)"""
    client = inproc_client
    v = Variable("v-own-copy")
    future = client.submit(inc, 2, pure=False)
    thread, outcome = in_thread(v.get, 10)
    wait_until(lambda: variable_waiters(client, "v-own-copy") == 1, message="get waiting")
    v.set(future)
    del future
    gc.collect()
    v.set("replaced")  # the variable lets go of the future too
    thread.join(10)
    assert outcome["value"].result(timeout=10) == 3


def test_variable_from_sync_and_async_tasks(face):
    async def scenario(client):
        v = Variable("v-tasks")
        getter = client.submit(variable_get, v, 20, pure=False)
        setter = client.submit(variable_set, v, "from-task", pure=False)
        assert await face.result(setter, timeout=20)
        assert await face.result(getter, timeout=20) == "from-task"
        roundtrip = client.submit(async_variable_roundtrip, Variable(), 5, pure=False)
        assert await face.result(roundtrip, timeout=20) == 5
        with_future = client.submit(variable_set_future, "v-task-future", 1, pure=False)
        assert await face.result(with_future, timeout=20)
        got = await face(Variable("v-task-future").get(timeout=5))
        assert await face.result(got, timeout=10) == 2

        # a task waits for the value the client sets
        v = Variable()
        getter = client.submit(variable_get, v, 20, pure=False)
        await face(v.set("value"))
        assert await face.result(getter) == "value"
    face.run(scenario)


def test_two_clients_share_a_variable(inproc_client, second_client):
    future = inproc_client.submit(inc, 1)
    Variable("shared-v").set(future)
    got = Variable("shared-v", client=second_client).get(timeout=5)
    assert got.client is second_client
    assert got.result(timeout=10) == 2
    Variable("shared-v", client=second_client).set("replaced")
    assert Variable("shared-v").get() == "replaced"
