"""A scheduler, a worker and a client inside asyncio.run, running async
tasks that use asyncio (a sleep, a gather) next to a plain function.

    python examples/asyncio_servers.py
"""
import asyncio

from trioflow import Client, Scheduler, Worker


async def fetch(i):
    await asyncio.sleep(0.1)  # stands in for an aiohttp / asyncpg call
    return i * i


async def fetch_all(n):
    return sum(await asyncio.gather(*(fetch(i) for i in range(n))))


def inc(x):
    return x + 1


async def main():
    async with Scheduler() as s, Worker(s.address, nthreads=2), \
            Client(s.address, asynchronous=True) as client:
        total = await client.submit(fetch_all, 10)
        print("sum of squares:", total, "then", await client.submit(inc, total))


if __name__ == "__main__":
    asyncio.run(main())
