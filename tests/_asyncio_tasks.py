"""``async def`` tasks and actors that use asyncio, for test_asyncio_tasks.py.

An importable module so that worker processes unpickle them by reference."""

import asyncio
import pathlib

import anyio
import trio


async def asyncio_sleep_inc(x):
    await asyncio.sleep(0.01)
    return x + 1


async def asyncio_gather_sum(n):
    async def one(i):
        await asyncio.sleep(0.001 * i)
        return i

    return sum(await asyncio.gather(*(one(i) for i in range(n))))


async def asyncio_wait_for(x):
    # wait_for needs asyncio's current task from the task's first line on
    return await asyncio.wait_for(asyncio.sleep(0.01, result=x), timeout=10)


async def trio_double(x):
    await trio.sleep(0.01)
    return 2 * x


async def anyio_triple(x):
    await anyio.sleep(0.01)
    return 3 * x


async def asyncio_fails(message):
    await asyncio.sleep(0)
    raise ValueError(message)


async def trio_then_asyncio():
    await trio.sleep(0)
    await asyncio.sleep(0)


async def trio_or_asyncio(which):
    if which == "trio":
        await trio.sleep(0)
    else:
        await asyncio.sleep(0)
    return which


async def asyncio_until_cancelled(started, cancelled, cleanup_seconds=0.0):
    """Touch ``started``, sleep for ever in asyncio; when cancelled, run
    ``cleanup_seconds`` of asyncio cleanup and then touch ``cancelled``."""
    pathlib.Path(started).touch()
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        await asyncio.shield(asyncio.sleep(cleanup_seconds))
        pathlib.Path(cancelled).touch()
        raise
    return "not cancelled"


class AsyncioGate:
    """An actor whose asyncio.Event is made in ``__init__`` (a task thread,
    no loop yet) and used by its async methods on the worker's loop."""

    def __init__(self):
        self.opened = asyncio.Event()
        self.count = 0

    async def wait_open(self):
        await asyncio.wait_for(self.opened.wait(), timeout=20)
        return self.count

    async def open(self):
        await asyncio.sleep(0.01)
        self.count += 1
        self.opened.set()
        return self.count

    async def gather_squares(self, n):
        async def square(i):
            await asyncio.sleep(0)
            return i * i

        return await asyncio.gather(*(square(i) for i in range(n)))
