# dask docs, asynchronous.rst: the client under asyncio
import asyncio

from dask.distributed import Client, Scheduler, Worker, as_completed


def inc(x):
    return x + 1


async def f():
    client = await Client(asynchronous=True, n_workers=1, threads_per_worker=1,
                          dashboard_address=None)
    future = client.submit(lambda x: x + 1, 10)
    result = await future
    await client.close()
    return result


async def g():
    async with Client(asynchronous=True, processes=False, dashboard_address=None) as client:
        futures = client.map(inc, range(10))
        total = 0
        async for future in as_completed(futures):
            total += await future
        gathered = await client.gather(futures)
        return total, sum(gathered), await client.sync(asyncio.sleep, 0.01, "slept")


async def fetch(i):
    # an async task that uses asyncio, as a task calling an asyncio library would
    await asyncio.sleep(0.01)
    parts = await asyncio.gather(*(asyncio.sleep(0.01, result=i * k) for k in range(3)))
    return sum(parts)


class Gate:
    opened = False

    def __init__(self):
        self.event = asyncio.Event()
        self.opened = False

    async def open(self):
        self.event.set()
        self.opened = True

    async def wait_open(self):
        await asyncio.wait_for(self.event.wait(), 10)
        return "open"


async def h():
    async with Scheduler(dashboard=False) as s, Worker(s.address) as w, \
            Client(s.address, asynchronous=True) as client:
        total = sum(await client.gather(client.map(fetch, range(4))))
        gate = await client.submit(Gate, actor=True)
        waiting = gate.wait_open()
        await gate.open()
        return total, await waiting, await gate.opened


if __name__ == "__main__":
    first = asyncio.run(f())
    total, gathered, slept = asyncio.run(g())
    fetched, gate, opened = asyncio.run(h())
    print("RESULT", [first, total, gathered, slept, fetched, gate, opened])
