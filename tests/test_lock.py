"""Lock: acquire/release/locked on every face, handed to the waiter on
release, exclusion between sync and ``async def`` tasks, and the lock (or a
place in line) given back when its caller gives up, closes, or its worker or
process is killed."""

import os
import signal

import pytest

import trioflow
from trioflow import Event, Lock, Queue
from trioflow.errors import CommClosedError
from _faces import ASYNC_FACES
from _primitive_tasks import (
    acquire_and_report_then_wait,
    async_hold_exclusively,
    hold_exclusively,
    lock_try_and_report,
)
from _primitive_views import (
    cancelled_at_once,
    check_lease_of_a_killed_client_process_is_given_back,
    given_up_after,
    in_thread,
    lease_state,
    outcome_of_a_call_whose_client_closes,
)
from _util import wait_until


def test_lock_acquire_release_locked(face):
    async def scenario(client):
        lock = Lock("l-basic")
        assert not await face(lock.locked())
        assert await face(lock.acquire())
        assert await face(lock.locked())
        other = Lock("l-basic")
        assert await face(other.acquire(blocking=False)) is False
        assert await face(other.acquire(timeout=0.05)) is False
        # timed-out waiters are gone
        assert await face(lease_state(client, "l-basic")) == (1, 0)
        with pytest.raises(ValueError):
            await face(other.acquire(blocking=False, timeout=1))
        with pytest.raises(RuntimeError):
            await face(other.release())
        await face(lock.release())
        assert not await face(lock.locked())
        if face.blocking:
            with lock:
                assert lock.locked()
        else:
            async with lock:
                assert await lock.locked()
            with pytest.raises(TypeError):
                with lock:
                    pass
        assert not await face(lock.locked())
        assert await face(lease_state(client, "l-basic")) == (0, 0)
    face.run(scenario)


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


def test_lock_excludes_sync_and_async_tasks(face):
    async def scenario(client):
        lock = Lock()
        sync = client.map(hold_exclusively, [lock] * 6, ["l-excl"] * 6, pure=False)
        asyn = client.map(async_hold_exclusively, [lock] * 6, ["l-excl"] * 6, pure=False)
        seen = await face(client.gather(sync + asyn))
        assert seen == [1] * 12
        assert not await face(lock.locked())
        free = client.submit(lock_try_and_report, lock, pure=False)
        assert await face.result(free, timeout=10)
        assert await face(lock.acquire())
        taken = client.submit(lock_try_and_report, lock, pure=False)
        assert not await face.result(taken, timeout=10)
        await face(lock.release())
    face.run(scenario)


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


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_a_cancelled_acquire_leaves_nothing_behind(face):
    async def scenario(client):
        lock = Lock("al-cancel")
        assert await lock.acquire()
        await given_up_after(0.05, Lock("al-cancel").acquire())
        await face.until_equal(lambda: lease_state(client, "al-cancel"), (1, 0))
        await lock.release()
        assert not await lock.locked()
    face.run(scenario)


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_lock_granted_to_a_caller_that_gave_up_is_given_back(face):
    async def scenario(client):
        lock = Lock("al-abandoned")
        assert await cancelled_at_once(lock.acquire())
        await face.until_equal(lambda: lease_state(client, "al-abandoned"), (0, 0))

        assert await lock.acquire()
        # waiting in line when cancelled: the place in line goes
        assert await cancelled_at_once(Lock("al-abandoned").acquire())
        await face.until_equal(lambda: lease_state(client, "al-abandoned"), (1, 0))
        await lock.release()
    face.run(scenario)


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


@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)
def test_async_client_closing_while_waiting_for_a_lock_holds_nothing(face):
    async def scenario(client):
        lock = Lock("al-closing")
        assert await lock.acquire()
        acquired = await outcome_of_a_call_whose_client_closes(
            face, client, lambda other: Lock("al-closing", client=other).acquire(),
            lambda client: lease_state(client, "al-closing"), (1, 1))
        assert isinstance(acquired.get("error"), (CommClosedError, trioflow.CancelledError))
        await face.until_equal(lambda: lease_state(client, "al-closing"), (1, 0))
        await lock.release()
        assert not await lock.locked()
    face.run(scenario)


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


# the lock of an asynchronous client that closes while holding it: in
# test_semaphore.py's test_leases_of_a_closing_client_are_given_back


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


@pytest.mark.timeout(120)
def test_lock_of_a_killed_client_process_is_given_back(check_leaks, tmp_path):
    check_lease_of_a_killed_client_process_is_given_back(tmp_path, "lock")
