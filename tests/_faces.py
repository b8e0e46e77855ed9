"""The client's three faces for tests that run one scenario through each.

A scenario is an ``async def scenario(client)`` that writes every call of the
client as ``await face(call)``. On the blocking face the call has already
returned its value and ``face(value)`` hands it back without suspending, so
the coroutine runs to its end in one step, outside any event loop (as a
blocking Client must be used). On the trio and asyncio faces the client is
``asynchronous=True`` under ``trio.run`` or ``asyncio.run`` and ``face(call)``
awaits the call's awaitable::

    def test_something(face):
        async def scenario(client):
            future = client.submit(inc, 1)
            assert await face.result(future) == 2
            assert await face(client.who_has()) ...
        face.run(scenario)

Use the ``face`` fixture of conftest.py (all three faces, leak-checked), or
restrict it: ``@pytest.mark.parametrize("face", ASYNC_FACES, indirect=True)``.
"""

import asyncio
import contextlib
import inspect
import pathlib
import time

import anyio
import trio

FACES = ("blocking", "trio", "asyncio")
ASYNC_FACES = ("trio", "asyncio")

# the in-process cluster of the ``inproc_client`` fixture and ``async_client()``
CLUSTER = dict(processes=False, n_workers=2, threads_per_worker=2, dashboard_address=None)


class Face:
    def __init__(self, name):
        assert name in FACES, name
        self.name = name

    def __repr__(self):
        return f"Face({self.name!r})"

    @property
    def blocking(self):
        return self.name == "blocking"

    # ------------------------------------------------------------ running

    def run(self, scenario, *args, **client_kwargs):
        """Start a client on an in-process cluster of two 2-thread workers (or
        as ``client_kwargs`` say) in this face; return ``await scenario(client, *args)``."""
        options = dict(CLUSTER, **client_kwargs)
        n_workers = options.get("n_workers", 0)
        if self.blocking:
            from trioflow import Client

            with Client(**options) as client:
                if n_workers:
                    client.wait_for_workers(n_workers, timeout=10)
                return self.drive(scenario(client, *args))

        async def main():
            from trioflow import Client

            async with Client(asynchronous=True, **options) as client:
                if n_workers:
                    await client.wait_for_workers(n_workers, timeout=10)
                return await scenario(client, *args)

        return trio.run(main) if self.name == "trio" else asyncio.run(main())

    def drive(self, coroutine):
        """Run a blocking-face scenario's coroutine, which never suspends, to its end."""
        assert self.blocking
        try:
            coroutine.send(None)
        except StopIteration as stop:
            return stop.value
        coroutine.close()
        raise RuntimeError("a scenario on the blocking face awaited something that suspends; "
                           "use face.sleep / face.until instead of trio or asyncio calls")

    # ------------------------------------------------------------ calls

    async def __call__(self, value):
        """The value of a client call: as returned on the blocking face, awaited on the
        others. (A coroutine, such as the test's own helpers make, is awaited on every face.)"""
        if inspect.iscoroutine(value) or (not self.blocking and inspect.isawaitable(value)):
            return await value
        return value

    async def result(self, future, timeout=None):
        """``future.result(timeout)`` on the blocking face, ``await future`` on the others."""
        if self.blocking:
            return future.result(timeout=timeout)
        if timeout is None:
            return await future
        with anyio.fail_after(timeout):
            return await future

    async def sleep(self, seconds):
        if self.blocking:
            time.sleep(seconds)
        else:
            await anyio.sleep(seconds)

    async def until(self, predicate, timeout=10.0, interval=0.02, message=None):
        """Poll ``predicate()`` (a value, or an awaitable of one) until it is truthy; return it."""
        deadline = time.monotonic() + timeout
        while True:
            value = await self(predicate())
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s: {message or predicate!r}")
            await self.sleep(interval)

    async def until_equal(self, call, expected, timeout=10.0, message=None):
        """Poll ``call()`` (a value, or an awaitable of one) until it equals ``expected``."""
        async def equal():
            return await self(call()) == expected
        await self.until(equal, timeout, message=message or f"{call!r} == {expected!r}")

    # ------------------------------------------------------------ the scheduler's side

    async def two_workers(self, client):
        """The addresses of the client's two workers, sorted."""
        workers = sorted(await self(client.nthreads()))
        assert len(workers) == 2, workers
        return workers

    async def task_count(self, client):
        """How many tasks the scheduler holds."""
        return await self(client.run_on_scheduler(
            lambda dask_scheduler: len(dask_scheduler.state.tasks)))

    async def forgotten(self, client, key):
        """True once no worker holds ``key`` and the scheduler no longer lists it."""
        if key in await self(client.who_has()):
            return False
        return all(key not in keys for keys in (await self(client.has_what())).values())

    async def held(self, client, key):
        """True while some worker holds ``key`` in memory (by who_has or has_what)."""
        if (await self(client.who_has())).get(key):
            return True
        return any(key in keys for keys in (await self(client.has_what())).values())

    async def barrier(self, client, timeout=10.0):
        """Return once the scheduler has handled everything ``client`` sent before
        (a key submitted and released after the rest is forgotten), so a test can
        assert that something did NOT happen without sleeping."""
        from _tasks import inc

        marker = client.submit(inc, 0, pure=False)
        await self.result(marker, timeout)
        key = marker.key
        marker.release()
        del marker
        await self.until(lambda: self.forgotten(client, key), timeout,
                         message="barrier key forgotten")

    @contextlib.asynccontextmanager
    async def held_task(self, client, path):
        """The future of a task that runs until the block ends (it waits for
        ``path``, which leaving the block creates)."""
        from _tasks import wait_for_path

        try:
            yield client.submit(wait_for_path, str(path))
        finally:
            pathlib.Path(path).touch()

    @contextlib.asynccontextmanager
    async def other_client(self, client):
        """A second client of this face on ``client``'s scheduler, closed on leaving."""
        from trioflow import Client

        if self.blocking:
            other = Client(client.scheduler_address, set_as_default=False)
            try:
                yield other
            finally:
                other.close()
        else:
            async with Client(client.scheduler_address, asynchronous=True,
                              set_as_default=False) as other:
                yield other
