"""Queue, Variable, Lock, Event and Semaphore from an asynchronous client,
under trio and under asyncio: the awaitable API, tasks using them, a client
closing while blocked, and cancel-safety when the caller cancels (including
a reply that arrives after the caller gave up)."""

from contextlib import asynccontextmanager

import anyio
import pytest

import trioflow
from trioflow import Client, Event, Lock, Queue, Semaphore, Variable
from trioflow.errors import CommClosedError
from _primitive_tasks import (
    async_consume,
    async_event_wait,
    async_hold_exclusively,
    async_queue_roundtrip,
    consume,
    event_wait,
    hold_exclusively,
    produce,
    queue_roundtrip,
    variable_get,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


@asynccontextmanager
async def cluster():
    async with Client(processes=False, asynchronous=True, n_workers=2, threads_per_worker=2,
                      dashboard_address=None) as client:
        yield client


@asynccontextmanager
async def other_client(client):
    async with Client(client.scheduler_address, asynchronous=True,
                      set_as_default=False) as other:
        yield other


async def eventually(predicate, timeout=10.0, message=""):
    """Wait until ``await predicate()`` is truthy, with a deadline."""
    with anyio.fail_after(timeout):
        while True:
            value = await predicate()
            if value:
                return value
            await anyio.sleep(0.01)


def _queue_state(name, dask_scheduler=None):
    state = dask_scheduler.extensions["queues"].queues.get(name)
    return None if state is None else (len(state.items), state.busy)


def _lease_state(name, extension, dask_scheduler=None):
    table = dask_scheduler.extensions[extension].tables.get(name)
    return (0, 0) if table is None else (len(table.holders), len(table.waiters))


def _event_waiters(name, dask_scheduler=None):
    state = dask_scheduler.extensions["events"].events.get(name)
    return 0 if state is None else state.waiting


async def queue_state(client, name):
    return await client.run_on_scheduler(_queue_state, name)


async def lease_state(client, name, extension="locks"):
    return await client.run_on_scheduler(_lease_state, name, extension)


async def event_waiters(client, name):
    return await client.run_on_scheduler(_event_waiters, name)


async def _cancelled_at_once(awaitable):
    """Await ``awaitable`` in a scope that is already cancelled: the request
    leaves, and the caller gives up before any reply can arrive."""
    with anyio.CancelScope() as scope:
        scope.cancel()
        await awaitable
    return scope.cancelled_caught


# ---------------------------------------------------------------- from the client


async def test_queue_and_variable_awaitable_api(anyio_backend):
    async with cluster() as client:
        q = Queue("aq-basic")
        await q.put(1)
        await q.put({"two": 2})
        assert await q.qsize() == 2
        assert await q.get() == 1
        assert await q.get(batch=True) == [{"two": 2}]
        with pytest.raises(trioflow.TimeoutError):
            await q.get(timeout=0.05)
        future = client.submit(sum, [1, 2])
        await q.put(future)
        got = await q.get(timeout=5)
        assert await got == 3

        v = Variable("av-basic")
        with pytest.raises(trioflow.TimeoutError):
            await v.get(timeout=0.05)
        await v.set(future)
        assert await (await v.get()) == 3
        await v.delete()
        with pytest.raises(trioflow.TimeoutError):
            await v.get(timeout="20ms")


async def test_lock_event_semaphore_awaitable_api(anyio_backend):
    async with cluster():
        lock = Lock("al-basic")
        assert await lock.acquire()
        assert await lock.locked()
        assert await Lock("al-basic").acquire(blocking=False) is False
        await lock.release()
        async with lock:
            assert await lock.locked()
        assert not await lock.locked()
        with pytest.raises(TypeError):
            with lock:
                pass

        event = Event("ae-basic")
        assert await event.wait(timeout=0.05) is False
        await event.set()
        assert await event.is_set() and await event.wait()
        await event.clear()
        assert not await event.is_set()

        sem = Semaphore(max_leases=2, name="as-basic")
        assert await sem.acquire() and await sem.acquire()
        assert await sem.acquire(timeout=0.05) is False
        assert await sem.get_value() == 2
        await sem.release()
        await sem.release()
        async with sem:
            assert await sem.get_value() == 1
        await sem.close()


# ---------------------------------------------------------------- tasks


async def test_primitives_in_sync_and_async_tasks(anyio_backend):
    async with cluster() as client:
        q = Queue()
        consumer = client.submit(async_consume, q, 3, pure=False)
        producer = client.submit(produce, q, [1, 2, 3], pure=False)
        assert await producer == 3
        assert await consumer == [1, 2, 3]
        assert await client.submit(queue_roundtrip, q, "s", pure=False) == "s"
        assert await client.submit(async_queue_roundtrip, q, "a", pure=False) == "a"
        consumer = client.submit(consume, q, 2, pure=False)
        await q.put("from")
        await q.put("client")
        assert await consumer == ["from", "client"]

        v = Variable()
        getter = client.submit(variable_get, v, 20, pure=False)
        await v.set("value")
        assert await getter == "value"

        lock = Lock()
        sem = Semaphore(max_leases=2)
        held = (client.map(hold_exclusively, [lock] * 4, ["al-count"] * 4, pure=False)
                + client.map(async_hold_exclusively, [lock] * 4, ["al-count"] * 4, pure=False))
        assert await client.gather(held) == [1] * 8
        held = (client.map(hold_exclusively, [sem] * 4, ["as-count"] * 4, pure=False)
                + client.map(async_hold_exclusively, [sem] * 4, ["as-count"] * 4, pure=False))
        assert max(await client.gather(held)) <= 2

        event = Event("ae-tasks")
        waiters = (client.map(event_wait, [event] * 2, pure=False)
                   + client.map(async_event_wait, [event] * 2, pure=False))
        await eventually(lambda: _equals(event_waiters(client, "ae-tasks"), 4), timeout=20)
        await event.set()
        assert await client.gather(waiters) == [True] * 4


async def _equals(awaitable, expected):
    return (await awaitable) == expected


# ---------------------------------------------------------------- cancel-safety


async def test_cancelled_waits_leave_nothing_behind(anyio_backend):
    async with cluster() as client:
        q = Queue("aq-cancel")
        with anyio.move_on_after(0.05):
            await q.get()
        await q.put("kept")
        assert await q.qsize() == 1
        await eventually(lambda: _equals(queue_state(client, "aq-cancel"), (1, 0)))

        lock = Lock("al-cancel")
        assert await lock.acquire()
        with anyio.move_on_after(0.05):
            await Lock("al-cancel").acquire()
        await eventually(lambda: _equals(lease_state(client, "al-cancel"), (1, 0)))
        await lock.release()
        assert not await lock.locked()

        event = Event("ae-cancel")
        with anyio.move_on_after(0.05):
            await event.wait()
        await eventually(lambda: _equals(event_waiters(client, "ae-cancel"), 0))


async def test_item_taken_for_a_caller_that_gave_up_goes_back_in_front(anyio_backend):
    async with cluster() as client:
        q = Queue("aq-abandoned")
        await q.put(1)
        await q.put(2)
        # under trio the get is answered (item taken) after the caller gave up:
        # the client puts it back in front; under asyncio it may never leave
        assert await _cancelled_at_once(q.get())
        await eventually(lambda: _equals(queue_state(client, "aq-abandoned"), (2, 0)))
        assert await q.get(batch=2) == [1, 2]

        future = client.submit(sum, [20, 22])
        await q.put(future)
        del future
        assert await _cancelled_at_once(q.get())
        await eventually(lambda: _equals(queue_state(client, "aq-abandoned"), (1, 0)))
        got = await q.get(timeout=5)
        assert await got == 42


async def test_lease_granted_to_a_caller_that_gave_up_is_given_back(anyio_backend):
    async with cluster() as client:
        lock = Lock("al-abandoned")
        assert await _cancelled_at_once(lock.acquire())
        await eventually(lambda: _equals(lease_state(client, "al-abandoned"), (0, 0)))

        assert await lock.acquire()
        # waiting in line when cancelled: the place in line goes
        assert await _cancelled_at_once(Lock("al-abandoned").acquire())
        await eventually(lambda: _equals(lease_state(client, "al-abandoned"), (1, 0)))
        await lock.release()

        sem = Semaphore(max_leases=1, name="as-abandoned")
        assert await _cancelled_at_once(sem.acquire())
        await eventually(lambda: _equals(lease_state(client, "as-abandoned", "semaphores"),
                                         (0, 0)))
        assert await sem.acquire(timeout=5)
        await sem.release()


# ---------------------------------------------------------------- a client closing


async def _capture(outcome, awaitable_fn):
    try:
        outcome["value"] = await awaitable_fn()
    except Exception as exc:
        outcome["error"] = exc


async def test_client_closing_while_blocked_holds_nothing(anyio_backend):
    async with cluster() as client:
        lock = Lock("al-closing")
        assert await lock.acquire()
        got, acquired = {}, {}
        async with anyio.create_task_group() as tg:
            async with other_client(client) as other:
                theirs_q = Queue("aq-closing", client=other)
                theirs_lock = Lock("al-closing", client=other)
                tg.start_soon(_capture, got, theirs_q.get)
                tg.start_soon(_capture, acquired, theirs_lock.acquire)
                await eventually(lambda: _equals(queue_state(client, "aq-closing"), (0, 1)))
                await eventually(lambda: _equals(lease_state(client, "al-closing"), (1, 1)))
            # leaving the block closed the other client while both calls waited
        assert isinstance(got.get("error"), (CommClosedError, trioflow.CancelledError)), got
        assert isinstance(acquired.get("error"), (CommClosedError, trioflow.CancelledError))
        await eventually(lambda: _equals(queue_state(client, "aq-closing"), None))
        await eventually(lambda: _equals(lease_state(client, "al-closing"), (1, 0)))
        await Queue("aq-closing").put("kept")
        assert await Queue("aq-closing").get(timeout=5) == "kept"
        await lock.release()
        assert not await lock.locked()


async def test_leases_of_a_closing_client_are_given_back(anyio_backend):
    async with cluster() as client:
        sem = Semaphore(max_leases=1, name="as-closing")
        async with other_client(client) as other:
            assert await Semaphore(max_leases=1, name="as-closing", client=other).acquire()
            assert await Lock("al-holder", client=other).acquire()
            assert await sem.get_value() == 1
            assert await sem.acquire(timeout=0.05) is False
        assert await sem.acquire(timeout=10)
        assert not await Lock("al-holder").locked()
        await sem.release()
