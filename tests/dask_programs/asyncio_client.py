# dask docs, asynchronous.rst: the client under asyncio
import asyncio

from dask.distributed import Client, as_completed


def inc(x):
    return x + 1


async def f():
    client = await Client(asynchronous=True, n_workers=2, threads_per_worker=1,
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


if __name__ == "__main__":
    first = asyncio.run(f())
    total, gathered, slept = asyncio.run(g())
    print("RESULT", [first, total, gathered, slept])
