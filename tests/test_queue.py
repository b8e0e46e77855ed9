"""Queue: put/get/qsize/batches and timeouts on every face, between sync and
``async def`` tasks, futures kept alive while on the queue, two clients
sharing one, and nothing left behind when a waiting caller closes or gives up."""

import gc

import pytest

import trioflow
from trioflow import Queue
from trioflow.errors import CommClosedError
from _faces import ASYNC_FACES
from _primitive_tasks import (
    async_consume,
    async_produce,
    async_queue_roundtrip,
    consume,
    inc,
    produce,
    put_submitted_future,
    queue_roundtrip,
    use_named_queue,
)
from _primitive_views import (
    cancelled_at_once,
    given_up_after,
    in_thread,
    outcome_of_a_call_whose_client_closes,
    queue_state,
)
from _util import barrier, key_is_forgotten, key_is_held, wait_until


def test_queue_put_get_qsize_and_batches(face):
    async def scenario(client):
        q = Queue("q-basic")
        for value in ("a", {"b": 1}, [3]):
            await face(q.put(value))
        assert await face(q.qsize()) == 3
        assert await face(q.get()) == "a"
        assert await face(q.get(batch=True)) == [{"b": 1}, [3]]
        assert await face(q.get(batch=True)) == []
        for i in range(4):
            await face(q.put(i))
        assert await face(q.get(batch=2)) == [0, 1]
        assert await face(q.get(batch=2, timeout="1s")) == [2, 3]
        assert await face(q.qsize()) == 0
        with pytest.raises(trioflow.TimeoutError):
            await face(q.get(timeout=0.05))
        future = client.submit(sum, [1, 2])
        await face(q.put(future))
        got = await face(q.get(timeout=5))
        assert await face.result(got, timeout=10) == 3
    face.run(scenario)


def test_queue_get_timeout_raises_and_takes_nothing(face):
    async def scenario(client):
        q = Queue("q-timeout")
        with pytest.raises(trioflow.TimeoutError):
            await face(q.get(timeout=0.05))
        await face(q.put(1))
        # a batch that cannot be filled in time gives back what it had taken, in order
        with pytest.raises(trioflow.TimeoutError):
            await face(q.get(timeout=0.05, batch=3))
        assert await face(q.qsize()) == 1
        await face(q.put(2))
        assert await face(q.get(batch=2)) == [1, 2]
        assert await face(queue_state(client, "q-timeout")) is None  # nothing left behind
    face.run(scenario)


def test_bounded_queue_blocks_put_until_room_and_times_out(inproc_client):
    q = Queue("q-bounded", maxsize=2)
    q.put(1)
    q.put(2)
    with pytest.raises(trioflow.TimeoutError):
        q.put(3, timeout=0.05)
    assert q.qsize() == 2
    thread, outcome = in_thread(q.put, 3)
    wait_until(lambda: queue_state(inproc_client, "q-bounded") == (2, 1),
               message="put waiting for room")
    assert q.get() == 1
    thread.join(10)
    assert outcome == {"value": None}
    assert q.get(batch=True) == [2, 3]


def test_queue_blocked_get_wakes_on_put(inproc_client):
    q = Queue("q-wake")
    thread, outcome = in_thread(q.get, 10)
    wait_until(lambda: queue_state(inproc_client, "q-wake") == (0, 1), message="get waiting")
    q.put("hello")
    thread.join(10)
    assert outcome == {"value": "hello"}


def test_queue_between_sync_tasks(face):
    async def scenario(client):
        q = Queue()
        consumer = client.submit(consume, q, 5, pure=False)
        producer = client.submit(produce, q, list(range(5)), pure=False)
        assert await face.result(producer, timeout=20) == 5
        assert await face.result(consumer, timeout=20) == [0, 1, 2, 3, 4]
        roundtrip = client.submit(queue_roundtrip, q, "x", pure=False)
        assert await face.result(roundtrip, timeout=20) == "x"
        # found by name inside the task, seen by name here
        named = client.submit(use_named_queue, "q-by-name", 7, pure=False)
        assert await face.result(named, timeout=20) == 1
        assert await face(Queue("q-by-name").get(timeout=5)) == 7
    face.run(scenario)


def test_queue_between_async_tasks(face):
    async def scenario(client):
        q = Queue()
        consumer = client.submit(async_consume, q, 4, pure=False)
        producer = client.submit(async_produce, q, ["a", "b", "c", "d"], pure=False)
        assert await face.result(producer, timeout=20) == 4
        assert await face.result(consumer, timeout=20) == ["a", "b", "c", "d"]
        roundtrip = client.submit(async_queue_roundtrip, q, 9, pure=False)
        assert await face.result(roundtrip, timeout=20) == 9
    face.run(scenario)


def test_queue_between_sync_and_async_tasks_and_the_client(face):
    async def scenario(client):
        q = Queue()
        consumer = client.submit(async_consume, q, 3, pure=False)
        producer = client.submit(produce, q, [1, 2, 3], pure=False)
        assert await face.result(producer) == 3
        assert await face.result(consumer) == [1, 2, 3]
        assert await face.result(client.submit(queue_roundtrip, q, "s", pure=False)) == "s"
        assert await face.result(client.submit(async_queue_roundtrip, q, "a",
                                               pure=False)) == "a"
        consumer = client.submit(consume, q, 2, pure=False)
        await face(q.put("from"))
        await face(q.put("client"))
        assert await face.result(consumer) == ["from", "client"]
    face.run(scenario)


def test_future_on_queue_stays_alive_until_taken(inproc_client):
    client = inproc_client
    q = Queue("q-futures")
    future = client.submit(inc, 41)
    assert future.result(timeout=10) == 42
    key = future.key
    q.put(future)
    del future
    gc.collect()
    barrier(client)
    assert key_is_held(client, key), "the queue let go of a future it holds"
    got = q.get(timeout=5)
    assert got.key == key and got.result(timeout=10) == 42
    del got
    gc.collect()
    wait_until(lambda: key_is_forgotten(client, key), message="taken future released")


def test_queue_close_empties_it_and_lets_go_of_its_futures(inproc_client):
    q = Queue("q-close")
    [scattered] = inproc_client.scatter([10])
    q.put(scattered)
    q.put("a value")
    key, scattered = scattered.key, None
    gc.collect()
    q.close()  # one-way, as dask's
    assert q.qsize() == 0
    wait_until(lambda: key_is_forgotten(inproc_client, key), message="its future released")
    assert queue_state(inproc_client, "q-close") is None
    q.put(3)  # a later put starts it afresh
    assert q.get(timeout=5) == 3


def test_future_taken_while_the_taker_drops_its_own_copy_stays_alive(inproc_client):
    """The getter's client holds a future of the key and drops it while the
    reply is on its way: the key must outlive that moment."""
    client, q = inproc_client, Queue("q-own-copy")
    future = client.submit(inc, 1, pure=False)
    key = future.key
    thread, outcome = in_thread(q.get, 10)
    wait_until(lambda: queue_state(client, "q-own-copy") == (0, 1), message="get waiting")
    q.put(future)
    del future
    gc.collect()
    thread.join(10)
    got = outcome["value"]
    assert got.key == key
    assert got.result(timeout=10) == 2


def test_future_submitted_in_a_task_travels_through_the_queue(inproc_client):
    client = inproc_client
    q = Queue("q-task-future")
    assert client.submit(put_submitted_future, q, 1, pure=False).result(timeout=20)
    got = q.get(timeout=10)
    assert isinstance(got, trioflow.Future)
    assert got.result(timeout=10) == 2


def test_two_clients_share_a_queue(inproc_client, second_client):
    mine, theirs = Queue("shared-q"), Queue("shared-q", client=second_client)
    mine.put(1)
    theirs.put(2)
    assert theirs.qsize() == 2
    assert theirs.get() == 1 and mine.get() == 2


def test_client_closing_while_blocked_in_get_leaves_nothing(inproc_client, second_client):
    q = Queue("q-disconnect", client=second_client)
    thread, outcome = in_thread(q.get)
    wait_until(lambda: queue_state(inproc_client, "q-disconnect") == (0, 1),
               message="get waiting")
    second_client.close()
    thread.join(10)
    assert not thread.is_alive() and "error" in outcome
    wait_until(lambda: queue_state(inproc_client, "q-disconnect") is None,
               message="the closed client's get is gone")
    q = Queue("q-disconnect")
    q.put("kept")
    assert q.qsize() == 1 and q.get() == "kept"


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_async_client_closing_while_blocked_in_get_leaves_nothing(face):
    async def scenario(client):
        got = await outcome_of_a_call_whose_client_closes(
            face, client, lambda other: Queue("aq-closing", client=other).get(),
            lambda client: queue_state(client, "aq-closing"), (0, 1))
        assert isinstance(got.get("error"), (CommClosedError, trioflow.CancelledError)), got
        await face.until_equal(lambda: queue_state(client, "aq-closing"), None)
        await Queue("aq-closing").put("kept")
        assert await Queue("aq-closing").get(timeout=5) == "kept"
    face.run(scenario)


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_a_cancelled_get_leaves_nothing_behind(face):
    async def scenario(client):
        q = Queue("aq-cancel")
        await given_up_after(0.05, q.get())
        await q.put("kept")
        assert await q.qsize() == 1
        await face.until_equal(lambda: queue_state(client, "aq-cancel"), (1, 0))
    face.run(scenario)


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_item_taken_for_a_caller_that_gave_up_goes_back_in_front(face):
    async def scenario(client):
        q = Queue("aq-abandoned")
        await q.put(1)
        await q.put(2)
        # under trio the get is answered (item taken) after the caller gave up:
        # the client puts it back in front; under asyncio it may never leave
        assert await cancelled_at_once(q.get())
        await face.until_equal(lambda: queue_state(client, "aq-abandoned"), (2, 0))
        assert await q.get(batch=2) == [1, 2]

        future = client.submit(sum, [20, 22])
        await q.put(future)
        del future
        assert await cancelled_at_once(q.get())
        await face.until_equal(lambda: queue_state(client, "aq-abandoned"), (1, 0))
        got = await q.get(timeout=5)
        assert await got == 42
    face.run(scenario)
