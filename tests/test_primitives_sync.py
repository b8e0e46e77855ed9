"""Queue, Variable, Lock, Event and Semaphore from a blocking client and from
inside sync and ``async def`` tasks: behaviour, sharing between clients,
futures kept alive, cancel-safety, and leases given back when their holder
disconnects or dies."""

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

import trioflow
from trioflow import Client, Event, Lock, Queue, Semaphore, Variable
from trioflow.errors import TrioflowError
from _primitive_tasks import (
    acquire_and_report_then_wait,
    async_consume,
    async_event_wait,
    async_hold_exclusively,
    async_produce,
    async_queue_roundtrip,
    async_variable_roundtrip,
    consume,
    event_set,
    event_wait,
    hold_exclusively,
    inc,
    lock_try_and_report,
    produce,
    put_submitted_future,
    queue_roundtrip,
    use_named_queue,
    variable_get,
    variable_set,
    variable_set_future,
)
from _util import barrier, key_is_forgotten, key_is_held, subprocess_env, wait_until


# ---------------------------------------------------------------- scheduler-side views


def queue_state(client, name):
    """(items, requests waiting) of a queue on the scheduler; None if it has no state."""
    def look(dask_scheduler, name=name):
        state = dask_scheduler.extensions["queues"].queues.get(name)
        return None if state is None else (len(state.items), state.busy)
    return client.run_on_scheduler(look)


def lease_state(client, name, extension="locks"):
    """(holders, waiters) of a lock or semaphore on the scheduler."""
    def look(dask_scheduler, name=name, extension=extension):
        table = dask_scheduler.extensions[extension].tables.get(name)
        return (0, 0) if table is None else (len(table.holders), len(table.waiters))
    return client.run_on_scheduler(look)


def event_waiters(client, name):
    def look(dask_scheduler, name=name):
        state = dask_scheduler.extensions["events"].events.get(name)
        return 0 if state is None else state.waiting
    return client.run_on_scheduler(look)


def variable_waiters(client, name):
    def look(dask_scheduler, name=name):
        state = dask_scheduler.extensions["variables"].variables.get(name)
        return 0 if state is None else state.waiting
    return client.run_on_scheduler(look)


def in_thread(fn, *args):
    """Run ``fn(*args)`` in a thread; returns (thread, outcome dict)."""
    outcome = {}

    def run():
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: B036 - reported to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="primitive-test-caller")
    thread.start()
    return thread, outcome


@pytest.fixture
def second_client(inproc_client):
    client = Client(inproc_client.scheduler_address, set_as_default=False)
    try:
        yield client
    finally:
        client.close()


# ---------------------------------------------------------------- Queue


def test_queue_put_get_qsize_and_batches(inproc_client):
    q = Queue("q-basic")
    for value in ("a", {"b": 1}, [3]):
        q.put(value)
    assert q.qsize() == 3
    assert q.get() == "a"
    assert q.get(batch=True) == [{"b": 1}, [3]]
    assert q.get(batch=True) == []
    for i in range(4):
        q.put(i)
    assert q.get(batch=2) == [0, 1]
    assert q.get(batch=2, timeout="1s") == [2, 3]
    assert q.qsize() == 0


def test_queue_get_timeout_raises_and_takes_nothing(inproc_client):
    q = Queue("q-timeout")
    with pytest.raises(trioflow.TimeoutError):
        q.get(timeout=0.05)
    q.put(1)
    # a batch that cannot be filled in time gives back what it had taken, in order
    with pytest.raises(trioflow.TimeoutError):
        q.get(timeout=0.05, batch=3)
    assert q.qsize() == 1
    q.put(2)
    assert q.get(batch=2) == [1, 2]
    assert queue_state(inproc_client, "q-timeout") is None  # nothing left behind


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


def test_queue_between_sync_tasks(inproc_client):
    client = inproc_client
    q = Queue()
    consumer = client.submit(consume, q, 5, pure=False)
    producer = client.submit(produce, q, list(range(5)), pure=False)
    assert producer.result(timeout=20) == 5
    assert consumer.result(timeout=20) == [0, 1, 2, 3, 4]
    assert client.submit(queue_roundtrip, q, "x", pure=False).result(timeout=20) == "x"
    # found by name inside the task, seen by name here
    assert client.submit(use_named_queue, "q-by-name", 7, pure=False).result(timeout=20) == 1
    assert Queue("q-by-name").get(timeout=5) == 7


def test_queue_between_async_tasks(inproc_client):
    client = inproc_client
    q = Queue()
    consumer = client.submit(async_consume, q, 4, pure=False)
    producer = client.submit(async_produce, q, ["a", "b", "c", "d"], pure=False)
    assert producer.result(timeout=20) == 4
    assert consumer.result(timeout=20) == ["a", "b", "c", "d"]
    assert client.submit(async_queue_roundtrip, q, 9, pure=False).result(timeout=20) == 9


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
    """The getter's client already holds a future of the key and lets go of
    it while the reply is on its way: the key must outlive that moment."""
    client = inproc_client
    q = Queue("q-own-copy")
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


def test_future_submitted_in_a_task_travels_through_the_queue(inproc_client):
    client = inproc_client
    q = Queue("q-task-future")
    assert client.submit(put_submitted_future, q, 1, pure=False).result(timeout=20)
    got = q.get(timeout=10)
    assert isinstance(got, trioflow.Future)
    assert got.result(timeout=10) == 2


def test_two_clients_share_queue_and_variable(inproc_client, second_client):
    mine, theirs = Queue("shared-q"), Queue("shared-q", client=second_client)
    mine.put(1)
    theirs.put(2)
    assert theirs.qsize() == 2
    assert theirs.get() == 1 and mine.get() == 2

    future = inproc_client.submit(inc, 1)
    Variable("shared-v").set(future)
    got = Variable("shared-v", client=second_client).get(timeout=5)
    assert got.client is second_client
    assert got.result(timeout=10) == 2
    Variable("shared-v", client=second_client).set("replaced")
    assert Variable("shared-v").get() == "replaced"


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


# ---------------------------------------------------------------- Variable


def test_variable_set_get_delete_and_timeout(inproc_client):
    v = Variable("v-basic")
    with pytest.raises(trioflow.TimeoutError):
        v.get(timeout=0.05)
    assert variable_waiters(inproc_client, "v-basic") == 0
    v.set(1)
    assert v.get() == 1
    v.set({"x": [1, 2]})
    assert v.get(timeout=1) == {"x": [1, 2]}
    v.delete()
    with pytest.raises(trioflow.TimeoutError):
        v.get(timeout="50ms")
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


def test_variable_from_sync_and_async_tasks(inproc_client):
    client = inproc_client
    v = Variable("v-tasks")
    getter = client.submit(variable_get, v, 20, pure=False)
    assert client.submit(variable_set, v, "from-task", pure=False).result(timeout=20)
    assert getter.result(timeout=20) == "from-task"
    assert client.submit(async_variable_roundtrip, Variable(), 5, pure=False).result(
        timeout=20) == 5
    assert client.submit(variable_set_future, "v-task-future", 1, pure=False).result(
        timeout=20)
    assert Variable("v-task-future").get(timeout=5).result(timeout=10) == 2


# ---------------------------------------------------------------- Lock


def test_lock_acquire_release_locked(inproc_client):
    lock = Lock("l-basic")
    assert not lock.locked()
    assert lock.acquire()
    assert lock.locked()
    other = Lock("l-basic")
    assert other.acquire(blocking=False) is False
    assert other.acquire(timeout=0.05) is False
    assert lease_state(inproc_client, "l-basic") == (1, 0)  # timed-out waiters are gone
    with pytest.raises(ValueError):
        other.acquire(blocking=False, timeout=1)
    with pytest.raises(RuntimeError):
        other.release()
    lock.release()
    assert not lock.locked()
    with lock:
        assert lock.locked()
    assert not lock.locked()
    assert lease_state(inproc_client, "l-basic") == (0, 0)


def test_lock_is_handed_to_the_waiter_on_release(inproc_client):
    lock, other = Lock("l-handoff"), Lock("l-handoff")
    assert lock.acquire()
    thread, outcome = in_thread(other.acquire, True, 10)
    wait_until(lambda: lease_state(inproc_client, "l-handoff") == (1, 1), message="waiter")
    lock.release()
    thread.join(10)
    assert outcome == {"value": True}
    assert other.locked()
    other.release()


def test_lock_excludes_sync_and_async_tasks(inproc_client):
    client = inproc_client
    lock = Lock()
    sync = client.map(hold_exclusively, [lock] * 6, ["l-excl"] * 6, pure=False)
    asyn = client.map(async_hold_exclusively, [lock] * 6, ["l-excl"] * 6, pure=False)
    seen = client.gather(sync + asyn)
    assert seen == [1] * 12
    assert not lock.locked()
    assert client.submit(lock_try_and_report, lock, pure=False).result(timeout=10)
    assert lock.acquire()
    assert not client.submit(lock_try_and_report, lock, pure=False).result(timeout=10)
    lock.release()


def test_client_closing_while_waiting_for_a_lock_holds_nothing(inproc_client, second_client):
    lock = Lock("l-disconnect")
    assert lock.acquire()
    theirs = Lock("l-disconnect", client=second_client)
    thread, outcome = in_thread(theirs.acquire)
    wait_until(lambda: lease_state(inproc_client, "l-disconnect") == (1, 1), message="waiter")
    second_client.close()
    thread.join(10)
    assert not thread.is_alive() and "error" in outcome
    wait_until(lambda: lease_state(inproc_client, "l-disconnect") == (1, 0),
               message="the closed client's place in line is gone")
    lock.release()
    assert not lock.locked()


def test_lock_held_by_a_closing_client_is_freed(inproc_client, second_client):
    theirs = Lock("l-holder-closes", client=second_client)
    assert theirs.acquire()
    mine = Lock("l-holder-closes")
    thread, outcome = in_thread(mine.acquire, True, 20)
    wait_until(lambda: lease_state(inproc_client, "l-holder-closes") == (1, 1))
    second_client.close()
    thread.join(20)
    assert outcome == {"value": True}
    mine.release()


@pytest.mark.timeout(120)
def test_lock_held_by_a_task_on_a_killed_worker_is_freed(proc_client):
    client = proc_client
    lock, pids = Lock("l-killed-worker"), Queue("l-killed-pids")
    task = client.submit(acquire_and_report_then_wait, lock, pids, "l-killed-stop", pure=False)
    pid = pids.get(timeout=30)
    assert lock.locked()
    assert not lock.acquire(timeout=0.05)
    client.cancel(task)  # so the killed task is not run again elsewhere
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not lock.locked(), timeout=30, message="lock freed after the kill")
    assert lock.acquire(timeout=10)
    lock.release()


# ---------------------------------------------------------------- Event


def test_event_set_clear_wait(inproc_client):
    event = Event("e-basic")
    assert not event.is_set()
    assert event.wait(timeout=0.05) is False
    assert event_waiters(inproc_client, "e-basic") == 0
    event.set()
    assert event.is_set() and event.wait() is True and event.wait(timeout=0) is True
    event.clear()
    assert not event.is_set()
    assert Event("e-basic").wait(timeout="20ms") is False


def test_one_set_wakes_every_waiter_in_tasks(inproc_client):
    client = inproc_client
    event = Event("e-tasks")
    # as many waiters as the cluster has slots (2 workers x 2 threads)
    waiters = (client.map(event_wait, [event] * 2, pure=False)
               + client.map(async_event_wait, [event] * 2, pure=False))
    wait_until(lambda: event_waiters(client, "e-tasks") == 4, timeout=20,
               message="tasks waiting on the event")
    assert not any(f.done() for f in waiters)
    assert client.submit(event_set, "e-tasks", pure=False).result(timeout=20)
    assert client.gather(waiters) == [True] * 4
    event.clear()
    wait_until(lambda: event_waiters(client, "e-tasks") == 0)


# ---------------------------------------------------------------- Semaphore


def test_semaphore_limits_holders(inproc_client):
    client = inproc_client
    sem = Semaphore(max_leases=2, name="s-basic")
    assert sem.acquire() and sem.acquire()
    assert sem.get_value() == 2
    assert sem.acquire(timeout=0.05) is False
    assert lease_state(client, "s-basic", "semaphores") == (2, 0)
    sem.release()
    sem.release()
    with pytest.raises(RuntimeError):
        sem.release()
    with sem:
        assert sem.get_value() == 1
    assert sem.get_value() == 0

    sem = Semaphore(max_leases=2)
    sync = client.map(hold_exclusively, [sem] * 6, ["s-count"] * 6, pure=False)
    asyn = client.map(async_hold_exclusively, [sem] * 6, ["s-count"] * 6, pure=False)
    assert max(client.gather(sync + asyn)) <= 2
    assert sem.get_value() == 0
    sem.close()
    with pytest.raises(TrioflowError):
        sem.acquire()


def test_two_tasks_sharing_a_worker_client_are_distinct_holders(inproc_client):
    client = inproc_client
    lock = Lock("l-same-worker")
    [address] = list(client.scheduler_info()["workers"])[:1]
    first = client.submit(acquire_and_report_then_wait, lock, Queue("l-same-q"),
                          "l-same-stop", workers=[address], pure=False)
    assert isinstance(Queue("l-same-q").get(timeout=20), int)
    # a second task on the same worker (same client) must wait for the first
    second = client.submit(lock_try_and_report, lock, workers=[address], pure=False)
    assert second.result(timeout=20) is False
    Event("l-same-stop").set()
    assert first.result(timeout=20)
    assert not lock.locked()


HOLDER_SCRIPT = textwrap.dedent(
    """
    import pathlib, sys, threading
    from trioflow import Client, Lock, Semaphore
    address, kind, name, marker = sys.argv[1:5]
    client = Client(address, timeout=30)
    held = Semaphore(max_leases=1, name=name) if kind == "semaphore" else Lock(name)
    assert held.acquire(timeout=30)
    pathlib.Path(marker).touch()
    threading.Event().wait(120)  # hold until killed
    """
)


@pytest.fixture
def ws_client(check_leaks):
    """A client on an in-process cluster reachable over ws:// from other processes."""
    with Client(processes=False, protocol="ws", n_workers=1, threads_per_worker=1,
                dashboard_address=None) as client:
        yield client


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["semaphore", "lock"])
def test_lease_of_a_killed_client_process_is_given_back(ws_client, tmp_path, kind):
    name = f"killed-holder-{kind}"
    marker = tmp_path / "acquired"
    held = Semaphore(max_leases=1, name=name) if kind == "semaphore" else Lock(name)
    extension = "semaphores" if kind == "semaphore" else "locks"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, ws_client.scheduler_address, kind, name,
         str(marker)], env=subprocess_env(), stdin=subprocess.DEVNULL)
    try:
        wait_until(lambda: marker.exists() or proc.poll() is not None, timeout=60,
                   message="the subprocess client acquired")
        assert proc.poll() is None, "the holder process exited early"
        assert not held.acquire(timeout=0.05)
        thread, outcome = in_thread(held.acquire, 30)
        wait_until(lambda: lease_state(ws_client, name, extension) == (1, 1),
                   message="waiting behind the subprocess")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        thread.join(30)
        assert outcome == {"value": True}, "the dead holder's lease was not given back"
        assert lease_state(ws_client, name, extension) == (1, 0)
        held.release()
        assert held.get_value() == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
