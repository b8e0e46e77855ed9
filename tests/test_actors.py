"""Actors: one instance on one worker, called directly by clients and tasks."""

import subprocess
import sys
import threading
import time

import pytest
import trio

import trioflow
from trioflow import Actor, ActorFuture, ActorLostError, Client, get_worker
from _util import TESTS_DIR, subprocess_env, wait_until

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


class Counter:
    n = 0

    def __init__(self):
        self.n = 0

    def increment(self):
        self.n += 1
        return self.n

    def add(self, amount=1):
        self.n += amount
        return self.n


class Log:
    """Records calls, and how many ran at once."""

    def __init__(self, start=()):
        self.items = list(start)
        self.active = 0
        self.most_active = 0

    def append(self, item):
        self.active += 1
        self.most_active = max(self.most_active, self.active)
        time.sleep(0.0005)  # widen the window in which an overlapping call would show
        self.items.append(item)
        self.active -= 1
        return len(self.items)

    def get(self):
        return list(self.items)

    def fail(self, text):
        raise ValueError(text)

    def slow(self, seconds):
        time.sleep(seconds)
        return "slow done"

    def where(self):
        try:
            trio.lowlevel.current_trio_token()
            in_loop = True
        except RuntimeError:
            in_loop = False
        return in_loop, threading.current_thread().name, get_worker().address

    async def where_async(self, value):
        await trio.sleep(0)
        worker = get_worker()
        same_loop = trio.lowlevel.current_trio_token() is worker.trio_token
        return same_loop, value

    def call_other(self, other):
        """An actor calling another actor from one of its methods."""
        return other.increment().result()


def use_counter(counter, times):
    return [counter.increment().result() for _ in range(times)]


async def use_counter_async(counter, times):
    values = [await counter.increment() for _ in range(times)]
    return values, await counter.n


def holders(client, key):
    return [a for a, keys in client.run(lambda dask_worker: list(dask_worker.actors)).items()
            if key in keys]


# ----------------------------------------------------------------------- blocking client

def test_actor_keeps_state_between_calls(inproc_client):
    future = inproc_client.submit(Counter, actor=True)
    counter = future.result()
    assert isinstance(counter, Actor)
    assert repr(counter) == f"<Actor: Counter, key={future.key}>"
    assert future.key.startswith("Counter-")
    assert future.type == "Counter"
    call = counter.increment()
    assert isinstance(call, ActorFuture)
    assert repr(call) == "<ActorFuture>"
    assert call.result(timeout=5) == 1
    assert call.done()
    assert counter.add(10).result(timeout=5) == 11
    assert counter.n == 11  # attribute reads are a round trip and return the value
    assert holders(inproc_client, future.key) == [future.client.who_has([future])[future.key][0]]


def test_two_actors_are_independent(face):
    async def scenario(c):
        a_future = c.submit(Counter, actor=True)
        b_future = c.submit(Counter, actors=True)
        assert a_future.key != b_future.key  # never pure: each submission is an instance
        a, b = await face(c.gather([a_future, b_future]))
        assert [await face(a.increment().result(timeout=5)) for _ in range(3)] == [1, 2, 3]
        assert await face(b.increment().result(timeout=5)) == 1
        assert (await face(a.n), await face(b.n)) == (3, 1)
    face.run(scenario)


def test_map_makes_one_actor_per_item(face):
    async def scenario(c):
        futures = c.map(Log, [["a"], ["b"]], actor=True)
        logs = [await face(f.result()) for f in futures]
        assert [await face(log.get().result(timeout=5)) for log in logs] == [["a"], ["b"]]
    face.run(scenario)


def test_pipelined_calls_run_in_order_one_at_a_time(face):
    async def scenario(c):
        log = await face(c.submit(Log, actor=True).result())
        calls = [log.append(i) for i in range(300)]
        last = log.get()
        assert [await face(call.result(timeout=10)) for call in calls] == list(range(1, 301))
        assert await face(last.result(timeout=10)) == list(range(300))
        assert await face(log.most_active) == 1
    face.run(scenario)


def test_sync_methods_run_in_the_workers_task_threads(face):
    async def scenario(c):
        log = await face(c.submit(Log, actor=True).result())
        in_loop, thread_name, address = await face(log.where().result(timeout=5))
        assert not in_loop
        assert thread_name.startswith("trioflow-task")
    face.run(scenario)


def test_async_method_runs_in_the_workers_loop(face):
    async def scenario(c):
        log = await face(c.submit(Log, actor=True).result())
        assert await face(log.where_async(7).result(timeout=5)) == (True, 7)
    face.run(scenario)


def test_method_errors_reach_the_caller_and_the_actor_survives(face):
    async def scenario(c):
        log = await face(c.submit(Log, actor=True).result())
        with pytest.raises(ValueError, match="broken on purpose"):
            await face(log.fail("broken on purpose").result(timeout=5))
        with pytest.raises(AttributeError):
            await face(log.no_such_attribute)  # an asynchronous client's read raises on await
        assert await face(log.append("after").result(timeout=5)) == 1
    face.run(scenario)


def test_result_timeout_then_the_value(face):
    async def scenario(c):
        log = await face(c.submit(Log, actor=True).result())
        call = log.slow(1.0)
        with pytest.raises(trioflow.TimeoutError):
            await face(call.result(timeout=0.05))
        assert not call.done()
        assert await face(call.result(timeout=10)) == "slow done"
    face.run(scenario)


def test_tasks_call_actors_through_futures_and_proxies(face):
    async def scenario(c):
        future = c.submit(Counter, actor=True)
        counter = await face(future.result())
        # a future argument: the task's worker gets a proxy as the dependency's value
        assert await face(c.submit(use_counter, future, 2).result(timeout=10)) == [1, 2]
        # a proxy argument travels as (key, address)
        assert await face(c.submit(use_counter, counter, 2).result(timeout=10)) == [3, 4]
        assert await face(c.submit(use_counter_async, counter, 2).result(timeout=10)) == (
            [5, 6], 6)
        assert await face(counter.n) == 6
    face.run(scenario)


def test_task_on_another_worker_calls_the_actor_directly(inproc_client):
    future = inproc_client.submit(Counter, actor=True)
    counter = future.result()
    (home,) = holders(inproc_client, future.key)
    (other,) = [w for w in inproc_client.scheduler_info()["workers"] if w != home]
    calls = inproc_client.submit(use_counter, counter, 3, workers=[other], pure=False)
    assert calls.result(timeout=10) == [1, 2, 3]
    assert holders(inproc_client, future.key) == [home]  # never copied or recomputed


@pytest.mark.parametrize("face", ["blocking", "trio", "asyncio"], indirect=True)
def test_actor_calls_another_actor(face):
    async def scenario(c):
        log = await face(c.submit(Log, actor=True).result())
        counter = await face(c.submit(Counter, actor=True).result())
        assert await face(log.call_other(counter).result(timeout=10)) == 1
        assert await face(counter.n) == 1
    face.run(scenario)


def test_released_actor_is_dropped_and_its_proxies_say_so(inproc_client):
    future = inproc_client.submit(Counter, actor=True)
    counter = future.result()
    key = future.key
    orphan = Actor(key, counter._address, "Counter", counter._methods)  # holds no future
    assert orphan.increment().result(timeout=5) == 1
    del future, counter
    wait_until(lambda: not holders(inproc_client, key), message="actor dropped")
    with pytest.raises(ActorLostError, match="does not hold actor"):
        orphan.increment().result(timeout=5)


def test_proxy_keeps_its_actor_alive(inproc_client):
    counter = inproc_client.submit(Counter, actor=True).result()  # the future is gone at once
    key = counter.key
    assert counter.increment().result(timeout=5) == 1
    from _util import barrier
    barrier(inproc_client)
    assert holders(inproc_client, key)
    assert counter.increment().result(timeout=5) == 2


# ----------------------------------------------------------------------- worker processes

def test_actor_in_worker_processes(proc_client):
    future = proc_client.submit(Counter, actor=True)
    counter = future.result(timeout=20)
    calls = [counter.increment() for _ in range(200)]
    assert [c.result(timeout=20) for c in calls] == list(range(1, 201))
    (home,) = proc_client.who_has([future])[future.key]
    (other,) = [w for w in proc_client.scheduler_info()["workers"] if w != home]
    remote = proc_client.submit(use_counter, counter, 3, workers=[other], pure=False)
    assert remote.result(timeout=20) == [201, 202, 203]
    assert counter.n == 203
    log = proc_client.submit(Log, actor=True).result(timeout=20)
    with pytest.raises(ValueError, match="across processes"):
        log.fail("across processes").result(timeout=10)


def test_parameter_server_example_runs():
    script = TESTS_DIR.parent / "examples" / "actor_parameter_server.py"
    done = subprocess.run([sys.executable, str(script)], env=subprocess_env(),
                          capture_output=True, text=True, timeout=50)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "converged" in done.stdout


# ----------------------------------------------------------------------- every face, and asynchronous clients

def test_calls_and_attributes_on_every_face(face):
    async def scenario(client):
        future = client.submit(Counter, actor=True)
        counter = await face.result(future)
        assert isinstance(counter, Actor)
        assert await face.result(counter.increment()) == 1
        call = counter.increment()  # sent at once, awaited later
        assert await face(call.result(timeout=5)) == 2
        assert await face(counter.n) == 2
        assert await face.result(client.submit(use_counter_async, counter, 2)) == ([3, 4], 4)
        assert await face.result(client.submit(use_counter, future, 1, pure=False)) == [5]
        log = await face.result(client.submit(Log, actor=True))
        with pytest.raises(ValueError, match="async face"):
            await face.result(log.fail("async face"))
    face.run(scenario, threads_per_worker=1)


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_actor_on_a_worker_that_left_fails_clearly_and_is_not_recomputed(anyio_backend):
    from trioflow import Scheduler, Worker
    from trioflow.comm.inproc import new_address
    with trio.fail_after(30):
        async with Scheduler(address=new_address()) as scheduler:
            async with Worker(scheduler.address, nthreads=1) as survivor:
                async with Client(scheduler.address, asynchronous=True) as client:
                    async with Worker(scheduler.address, nthreads=1) as doomed:
                        future = client.submit(Counter, actor=True, workers=[doomed.address])
                        counter = await future
                        orphan = Actor(counter.key, counter._address, "Counter",
                                       counter._methods)
                        assert await counter.increment() == 1
                    while future.status != "error":
                        await trio.sleep(0.01)
                    with pytest.raises(ActorLostError, match="never recomputed"):
                        await future
                    with pytest.raises(ActorLostError):
                        counter.increment()
                    with pytest.raises(ActorLostError):
                        await orphan.increment()
                    assert not survivor.actors
