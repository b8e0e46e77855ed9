"""Task functions for the coordination-primitive tests (Queue, Variable,
Lock, Event, Semaphore), importable by reference from worker processes.

Concurrency is measured with a process-wide counter, so the counting tasks
are meant for in-process workers (``processes=False``)."""

import os
import threading
import time

import trio

import trioflow

_guard = threading.Lock()
_inside: dict = {}


def _enter(name):
    with _guard:
        _inside[name] = _inside.get(name, 0) + 1
        return _inside[name]


def _leave(name):
    with _guard:
        _inside[name] -= 1


def inc(x):
    return x + 1


# ---------------------------------------------------------------- Queue


def queue_roundtrip(queue, value):
    """Put then get from inside a sync task."""
    queue.put(value)
    return queue.get(timeout=10)


def produce(queue, values):
    for value in values:
        queue.put(value)
    return len(values)


def consume(queue, n):
    return [queue.get(timeout=20) for _ in range(n)]


def put_submitted_future(queue, x):
    """Submit from inside the task and put the future on the queue."""
    client = trioflow.get_client()
    queue.put(client.submit(inc, x, pure=False))
    return True


def use_named_queue(name, value):
    """A queue found by name (no object passed), from inside a task."""
    queue = trioflow.Queue(name)
    queue.put(value)
    return queue.qsize()


async def async_queue_roundtrip(queue, value):
    await queue.put(value)
    return await queue.get(timeout=10)


async def async_produce(queue, values):
    for value in values:
        await queue.put(value)
    return len(values)


async def async_consume(queue, n):
    return [await queue.get(timeout=20) for _ in range(n)]


# ---------------------------------------------------------------- Variable


def variable_set(variable, value):
    variable.set(value)
    return True


def variable_get(variable, timeout=10):
    return variable.get(timeout=timeout)


def variable_set_future(name, x):
    client = trioflow.get_client()
    trioflow.Variable(name).set(client.submit(inc, x, pure=False))
    return True


async def async_variable_roundtrip(variable, value):
    await variable.set(value)
    got = await variable.get(timeout=10)
    await variable.delete()
    return got


# ---------------------------------------------------------------- Lock and Semaphore


def hold_exclusively(lock, counter, duration=0.02):
    """Hold ``lock`` (``with``) for ``duration`` seconds of work; return how many
    tasks were inside at once, as seen from inside."""
    with lock:
        seen = _enter(counter)
        time.sleep(duration)  # the work done under the lock
        _leave(counter)
    return seen


async def async_hold_exclusively(lock, counter, duration=0.02):
    async with lock:
        seen = _enter(counter)
        await trio.sleep(duration)  # the work done under the lock
        _leave(counter)
    return seen


def lock_try_and_report(lock):
    """acquire(blocking=False) from a task: True/False, released again if taken."""
    got = lock.acquire(blocking=False)
    if got:
        lock.release()
    return got


def acquire_and_report_then_wait(primitive, queue, stop_name, timeout=60):
    """Take ``primitive`` (a Lock or Semaphore), put this process's pid on
    ``queue``, then block on Event ``stop_name`` (the test kills us first)."""
    assert primitive.acquire(timeout=timeout)
    queue.put(os.getpid())
    trioflow.Event(stop_name).wait(timeout=timeout)
    primitive.release()
    return True


# ---------------------------------------------------------------- Event


def event_wait(event, timeout=20):
    return event.wait(timeout=timeout)


async def async_event_wait(event, timeout=20):
    return await event.wait(timeout=timeout)


def event_set(name):
    trioflow.Event(name).set()
    return True
